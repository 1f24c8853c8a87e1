"""Run a Python transformation dict in this process; return its result buffer.

Python code runs in a fresh namespace (`__name__ == "transformer"`) holding the pins,
PINS, FILESYSTEM, the modules of its module pins and the names of its `main` module
(its .globals). The code is one of four shapes:
  a single def   -> called with the pins it names (keyword arguments)
  a lambda       -> called the same way
  an expression  -> its value
  a block        -> must assign `result`
Modules are built from their definitions and imported through the namespace's own
__import__, so `import mymod` inside the code works and sys.modules is never touched.
"""

import ast
import builtins
import json
import linecache
import threading
import traceback
import types

from seamless.checksum import deserialize, serialize
from seamless.execution.job import TransformationFailure

_compiled = {}
_compiled_lock = threading.Lock()


def buffer_of(get_buffer, cs, what):
    data = get_buffer(cs)
    if data is None:
        raise TransformationFailure(f"{what}: buffer {cs} is in no cache and no store")
    return data


def pins(transformation, get_buffer):
    """(values, modules): argument values by pin name, module definitions by name."""
    values, modules = {}, {}
    for name, spec in transformation.items():
        if name.startswith("__") or name == "code" or name.startswith("META__"):
            continue
        celltype, subcelltype, cs = spec
        if subcelltype == "module":
            modules[name] = json.loads(buffer_of(get_buffer, cs, f"module {name!r}"))
        elif subcelltype == "checksum":
            values[name] = deserialize(buffer_of(get_buffer, cs, f"pin {name!r}"), "mixed")
        else:
            data = buffer_of(get_buffer, cs, f"pin {name!r}")
            try:
                values[name] = deserialize(data, celltype)
            except ValueError:
                if celltype != "mixed":
                    raise TransformationFailure(f"pin {name!r}: its buffer is not a {celltype} value") from None
                values[name] = data.decode(errors="replace").rstrip("\n")  # a text result fed to a mixed pin
    return values, modules


def run(transformation, get_buffer) -> bytes:
    code_cs = transformation["code"][2]
    code = deserialize(buffer_of(get_buffer, code_cs, "the code"), "python")
    values, module_defs = pins(transformation, get_buffer)
    importer = _Importer({k: v for k, v in module_defs.items() if k != "main"})
    namespace = {"__name__": "transformer", "__builtins__": importer.builtins, "PINS": dict(values),
                 "FILESYSTEM": {}}
    modules = {name: importer.load(name) for name in importer.definitions}
    if "main" in module_defs:
        main = importer.build_module("main", module_defs["main"])
        namespace.update({k: v for k, v in vars(main).items() if not k.startswith("__")})
    namespace.update(modules)
    namespace.update(values)
    arguments = {**values, **modules}  # a module pin can be an argument too
    shape, compiled, func_name, params = _compile(code, code_cs)
    try:
        exec(compiled, namespace)
        if shape == "function":
            result = namespace[func_name](**_arguments(params, arguments))
        elif shape == "lambda":
            result = namespace["__seamless_lambda__"](**_arguments(params, arguments))
        elif shape == "expression":
            result = namespace["__seamless_result__"]
        else:
            if "result" not in namespace:
                raise RuntimeError("Output variable name 'result' undefined")
            result = namespace["result"]
    except (Exception, SystemExit) as exc:  # sys.exit() in user code is a failure, not our exit
        raise TransformationFailure(_user_traceback(exc) + _name_hint(exc, func_name or "transformer")) from None
    if result is None:
        raise TransformationFailure("RuntimeError: Result is empty")
    celltype = transformation["__output__"][1]
    try:
        return serialize(result, celltype)
    except Exception as exc:  # TypeError, ValueError, RecursionError, ... from the value itself
        raise TransformationFailure(f"the result ({type(result).__name__}) cannot be stored as celltype "
                                    f"{celltype!r}: {exc}") from None


def _arguments(params, values):
    names, var_keyword = params
    kwargs = {name: values[name] for name in names if name in values}
    if var_keyword and var_keyword in values and isinstance(values[var_keyword], dict):
        kwargs.update(values[var_keyword])
    return kwargs


def _compile(code, code_cs):
    """(shape, code object, function name, (parameter names, **name)) for a code text, cached."""
    found = _compiled.get(code_cs)
    if found is not None:
        return found
    filename = f"transformer-{code_cs[:16]}"
    try:
        tree = ast.parse(code, filename)
    except SyntaxError as exc:
        raise TransformationFailure(f"SyntaxError: {exc}") from None
    body = tree.body
    shape, func_name, params = "block", None, ((), None)
    if len(body) == 1 and isinstance(body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        shape, func_name, params = "function", body[0].name, _params(body[0].args)
    elif len(body) == 1 and isinstance(body[0], ast.Expr):
        if isinstance(body[0].value, ast.Lambda):
            shape, params = "lambda", _params(body[0].value.args)
            tree = ast.parse(f"__seamless_lambda__ = {ast.get_source_segment(code, body[0].value)}", filename)
        else:
            shape = "expression"
            tree = ast.Module([ast.Assign([ast.Name("__seamless_result__", ast.Store())], body[0].value)], [])
            ast.fix_missing_locations(tree)
    _register_source(filename, code)
    found = (shape, compile(tree, filename, "exec"), func_name, params)
    with _compiled_lock:
        _compiled[code_cs] = found
    return found


def _params(args):
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return names, args.kwarg.arg if args.kwarg else None


def _register_source(filename, code):
    """Make the code readable by inspect.getsource: transformers defined inside it work."""
    lines = code.splitlines(keepends=True)
    linecache.cache[filename] = (len(code), None, lines, filename)


def _user_traceback(exc):
    """The traceback from the first frame of the user's code on: what they need to fix it."""
    tb = exc.__traceback__
    while tb is not None and not _user_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return text


def _name_hint(exc, transformer):
    """For a name the code (or a .globals function) looked up at module level and did not
    find: the code sees its pins, .globals and .modules, not the module it was written in."""
    if type(exc) is not NameError or not exc.name or str(exc) != f"name {exc.name!r} is not defined":
        return ""
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    if not (filename.startswith("transformer-") or filename == "module-main"):
        return ""  # a library's or a .modules module's own bug: not ours to explain
    name = exc.name
    return (f"name {name!r} is not defined inside the transformation: module-level names are not part of it; "
            f"pass it as an argument or declare it with `{transformer}.globals.{name} = {name}` "
            "(a module: import it inside the function)\n")


def _user_frame(filename):
    return filename.startswith(("transformer-", "module-"))


class _Importer:
    """Builds a transformation's modules from their definitions and serves imports of them."""

    def __init__(self, definitions):
        self.definitions = definitions
        self.built = {}
        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = self.import_

    def load(self, name):
        if name not in self.built:
            definition = self.definitions[name]
            if isinstance(definition.get("code"), dict):
                self._build_package(name, definition["code"])
            else:
                self.build_module(name, definition)
        return self.built[name]

    def build_module(self, name, definition, package=None, is_package=False):
        module = types.ModuleType(name)
        module.__builtins__ = self.builtins
        module.__package__ = name if is_package else (package or "")
        if is_package:
            module.__path__ = []
        self.built[name] = module
        code = definition["code"]
        filename = f"module-{name}"
        _register_source(filename, code)
        try:
            exec(compile(code, filename, "exec"), vars(module))
        except Exception as exc:
            raise TransformationFailure(f"module {name!r} failed to load:\n{_user_traceback(exc)}") from None
        return module

    def _build_package(self, name, parts):
        self._package_parts = getattr(self, "_package_parts", {})
        for key, definition in parts.items():
            full = name if key == "__init__" else f"{name}.{key}"
            self._package_parts[full] = (definition, key == "__init__" or f"{key}.__init__" in parts)
        self._load_part(name)

    def _load_part(self, full):
        if full in self.built:
            return self.built[full]
        definition, is_package = self._package_parts[full]
        parent = full.rpartition(".")[0]
        module = self.build_module(full, definition, package=parent, is_package=is_package)
        if parent and parent in self.built:
            setattr(self.built[parent], full.rpartition(".")[2], module)
        return module

    def _known(self, name):
        return name in self.definitions or name in getattr(self, "_package_parts", {})

    def import_(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level:
            package = (globals or {}).get("__package__") or ""
            base = package.rsplit(".", level - 1)[0] if level > 1 else package
            name = f"{base}.{name}" if name else base
        top = name.partition(".")[0]
        if not self._known(top):
            return builtins.__import__(name, globals, locals, fromlist, 0)
        module = self.load(top)
        parts = name.split(".")
        for i in range(2, len(parts) + 1):
            module = self._load_part(".".join(parts[:i]))
        for item in fromlist or ():
            sub = f"{name}.{item}"
            if getattr(self, "_package_parts", {}).get(sub):
                self._load_part(sub)
        return module if fromlist else self.built[top]
