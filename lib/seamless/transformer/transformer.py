"""Transformers: what @delayed / @direct make of a function or a code string.

    @delayed                    add(19, 23) -> a Transformation (nothing runs yet)
    def add(a, b): ...
    @direct                     add(19, 23) -> 42 (runs, or finds it cached)

A transformer carries the code and the settings (.celltypes, .args, .globals, .modules,
.meta, .scratch, .local, .environment ...). Calling it snapshots all of that into a
Transformation: later changes to the transformer do not change calls already made.
"""

import inspect

from seamless.buffer import Buffer, Checksum
from seamless.checksum import CELLTYPES, calculate_checksum, plain_dumps, serialize
from seamless.transformer import source
from seamless.transformer.transformation import Definition, Transformation

INPUT_CELLTYPES = CELLTYPES + ("deepcell", "deepfolder", "folder", "module")
NOT_A_RESULT = ("deepfolder", "module")
DEFAULT_META = {"transformer_path": ["tf", "tf"], "local": False, "__direct_print__": False}


def celltype_name(celltype):
    """A celltype from its name or a Python type (int -> "int")."""
    name = celltype.__name__ if isinstance(celltype, type) else celltype
    if name not in INPUT_CELLTYPES:
        raise TypeError(name, list(INPUT_CELLTYPES))
    return name


class _AttributeMap:
    """Attribute access as item access, over the dict self._data; subclasses say how
    items are read and changed."""

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]

    def __contains__(self, name):
        return name in self._data

    def __iter__(self):
        return iter(list(self._data))

    def __len__(self):
        return len(self._data)

    def keys(self):
        return list(self._data)

    def items(self):
        return list(self._data.items())

    def __repr__(self):
        return repr(self._data)


class _Pins(_AttributeMap):
    """A transformer's per-pin settings (.celltypes, .args)."""

    def __init__(self, owner, store, what):
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_data", store)
        object.__setattr__(self, "_what", what)

    def __getitem__(self, name):
        return self._data[name] if self._what == "celltypes" else self._data.get(name)

    def __setitem__(self, name, value):
        self._owner._set_pin(self._what, name, value)

    def __delitem__(self, name):
        self._owner._del_pin(self._what, name)


class _Namespace(_AttributeMap):
    """.globals and .modules: names given to the code."""

    def __init__(self, owner, check):
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_data", {})
        object.__setattr__(self, "_check", check)

    def __getitem__(self, name):
        return self._data.get(name)

    def __setitem__(self, name, value):
        self._check(value)
        self._data[name] = value
        self._owner._dirty()

    def __delitem__(self, name):
        del self._data[name]
        self._owner._dirty()


def _check_module(value):
    import types

    if not isinstance(value, (types.ModuleType, dict)):
        raise TypeError(f"a module (or a module-definition dict) is needed, not {type(value)}")


class Environment:
    """Where the code should run (conda, docker, ...): recorded in __env__, outside identity.
    A bash transformer activates its conda environment; Python runs in this interpreter."""

    KEYS = ("conda", "conda_environment", "docker", "which", "powers")

    def __init__(self):
        self._env = {}

    def _set(self, key, value):
        if value is None:
            self._env.pop(key, None)
        else:
            self._env[key] = value

    def set_conda(self, conda):
        """A conda environment definition (YAML text or a dict)."""
        if isinstance(conda, str):
            from seamless.config.yamlfiles import load_yaml

            conda = load_yaml(conda, "the conda environment")  # no alias bombs here either
        self._set("conda", conda)

    def get_conda(self):
        return self._env.get("conda")

    def set_conda_env(self, name):
        self._set("conda_environment", name)

    def get_conda_env(self):
        return self._env.get("conda_environment")

    def set_docker(self, docker):
        self._set("docker", docker)

    def get_docker(self):
        return self._env.get("docker")

    def set_which(self, which):
        self._set("which", list(which) if which is not None else None)

    def get_which(self):
        return self._env.get("which")

    def set_powers(self, powers):
        self._set("powers", powers)

    def get_powers(self):
        return self._env.get("powers")

    def _to_lowlevel(self):
        return dict(self._env) or None

    def __repr__(self):
        return f"Environment({self._env!r})"


class Transformer:
    """What @delayed makes: calling it returns a Transformation."""

    def __init__(self, code, language=None):
        if isinstance(code, Transformer):
            self._copy_from(code)
            return
        self._func = None
        self._signature = None
        if isinstance(code, str):
            self._code_text = code
        elif inspect.isfunction(code):
            self._func = code
            self._code_text = None  # read from the source on first use
            self._signature = inspect.signature(code)
            self.__name__ = code.__name__
            self.__qualname__ = code.__qualname__
            self.__doc__ = code.__doc__
            self.__wrapped__ = code
        else:
            raise TypeError("func must be a function or a code string")
        self._language = language or "python"
        if self._language not in ("python", "bash"):
            raise ValueError(f"language {self._language!r}: python or bash")
        if self._language != "python":
            self._signature = None
        self._celltypes = {"result": "mixed"}
        if self._signature is not None:
            self._celltypes = {name: "mixed" for name in self._signature.parameters}
            self._celltypes["result"] = "mixed"
        self._args = {}
        self._globals = _Namespace(self, lambda value: None)
        self._modules = _Namespace(self, _check_module)
        self._meta = dict(DEFAULT_META)
        self.scratch = False
        self.environment = Environment()
        self._allow_input_fingertip = False
        self._code_pin = None
        self._module_pins = None

    def _copy_from(self, other):
        import copy

        vars(self).update(copy.copy(vars(other)))
        self._celltypes = dict(other._celltypes)
        self._args = dict(other._args)
        self._meta = dict(other._meta)
        self._globals = _Namespace(self, lambda value: None)
        self._globals._data.update(other._globals._data)
        self._modules = _Namespace(self, _check_module)
        self._modules._data.update(other._modules._data)
        self.environment = Environment()
        self.environment._env.update(other.environment._env)

    # --- settings -------------------------------------------------------------------------

    @property
    def celltypes(self):
        return _Pins(self, self._celltypes, "celltypes")

    @property
    def args(self):
        return _Pins(self, self._args, "args")

    @property
    def globals(self):
        return self._globals

    @property
    def modules(self):
        return self._modules

    @property
    def meta(self):
        return self._meta

    @meta.setter
    def meta(self, value):
        merged = {**self._meta, **dict(value)}
        self._meta = {k: v for k, v in merged.items() if v is not None or k == "local"}

    @property
    def local(self):
        return bool(self._meta.get("local"))

    @local.setter
    def local(self, value):
        self._meta["local"] = bool(value)

    @property
    def direct_print(self):
        return self._meta.get("__direct_print__", False)

    @direct_print.setter
    def direct_print(self, value):
        self._meta["__direct_print__"] = _flag(value)

    @property
    def driver(self):
        return self._meta.get("driver")

    @driver.setter
    def driver(self, value):
        self._meta["driver"] = _flag(value)

    @property
    def allow_input_fingertip(self):
        return self._allow_input_fingertip

    @allow_input_fingertip.setter
    def allow_input_fingertip(self, value):
        if not isinstance(value, bool):
            raise TypeError(str(type(value)))
        self._allow_input_fingertip = value

    @property
    def language(self):
        return self._language

    @language.setter
    def language(self, value):
        if value not in ("python", "bash"):
            raise ValueError(f"language {value!r}: python or bash")
        self._language = value
        if value != "python":
            self._signature = None
        self._code_pin = None

    @property
    def code(self):
        return self._code()

    def _set_pin(self, what, name, value):
        if name == "result" and what == "args":
            raise AttributeError("result")
        if self._signature is not None and name != "result" and name not in self._signature.parameters:
            raise AttributeError(name)
        if what == "celltypes":
            value = celltype_name(value)
            if name == "result" and value in NOT_A_RESULT:
                raise TypeError(f"result celltype cannot be {value!r}")
            self._celltypes[name] = value
        else:
            self._args[name] = value
            self._celltypes.setdefault(name, "mixed")

    def _del_pin(self, what, name):
        """A code string's pin goes as a whole (a function's pins are its parameters)."""
        if self._signature is not None or name == "result":
            raise AttributeError(name)
        self._celltypes.pop(name, None)
        self._args.pop(name, None)

    def _dirty(self):
        self._module_pins = None

    # --- what a call snapshots ---------------------------------------------------------------

    def _code(self):
        if self._code_text is None:
            self._code_text = source.function_code(self._func)
        return self._code_text

    def _code_buffer(self):
        if self._code_pin is None:
            celltype = "python" if self._language == "python" else "text"
            data = serialize(self._code(), celltype)
            self._code_pin = ([celltype, "transformer", calculate_checksum(data)], data)
        return self._code_pin

    def _modules_buffers(self):
        if self._module_pins is None:
            pins = {}
            modules = dict(self._modules._data)
            main = modules.pop("main", None)
            for name, module in modules.items():
                pins[name] = _module_pin(source.module_definition(module))
            if self._globals._data:
                main_code = source.module_definition(main)["code"] if main is not None else None
                pins["main"] = _module_pin(source.globals_module(self._globals._data, main_code))
            elif main is not None:
                pins["main"] = _module_pin(source.module_definition(main))
            self._module_pins = pins
        return self._module_pins

    def _bind(self, args, kwargs):
        """The arguments of a call merged over .args: {pin: value} (defaults not applied)."""
        values = dict(self._args)
        if self._signature is None:
            if args:
                raise TypeError("No function signature: positional arguments not supported")
            values.update(kwargs)
            missing = [name for name in self._celltypes if name != "result" and name not in values]
            if missing:
                raise TypeError(f"Missing argument: {missing[0]!r}")
            return values
        params = self._signature.parameters
        for param in params.values():
            if param.kind is param.VAR_POSITIONAL:
                raise TypeError(f"*{param.name}: a transformer cannot take *args; pass a list instead")
        if args:  # a pre-bound argument given positionally at call time is overridden
            for name in list(params)[:len(args)]:
                values.pop(name, None)
        bound = self._signature.bind_partial(*args, **{k: v for k, v in kwargs.items()})
        values.update(bound.arguments)
        for name, param in params.items():
            if name not in values and param.default is param.empty and param.kind not in (param.VAR_KEYWORD,):
                raise TypeError(f"missing a required argument: {name!r}")
        return values

    def _definition(self, args, kwargs):
        values = self._bind(args, kwargs)
        code_pin, code_data = self._code_buffer()
        pins = {"code": code_pin}
        buffers = {code_pin[2]: code_data}
        deps = {}
        for name, value in values.items():
            celltype = self._celltypes.get(name, "mixed")
            if isinstance(value, Transformation):
                deps[name] = value
                pins[name] = [celltype, None, None]
                continue
            if celltype == "yaml":
                raise NotImplementedError(name)
            if celltype == "checksum":
                pins[name] = ["plain", "checksum", Checksum(value).hex()]
                continue
            if isinstance(value, Buffer):  # upstream: the pin's buffer, as it is (a file's bytes)
                cs = calculate_checksum(value.content)  # not a checksum= it was given
                pins[name] = [celltype, None, cs]
                buffers[cs] = value.content
                continue
            if isinstance(value, Checksum):  # upstream: a buffer in the stores, by reference (a plain str is a value)
                pins[name] = [celltype, None, value.hex()]
                continue
            if celltype == "module":
                pin, data = _module_pin(source.module_definition(value))
                pins[name] = pin
                buffers[pin[2]] = data
                continue
            try:
                data = serialize(value, celltype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise TypeError(f"argument {name!r} ({type(value).__name__}) cannot be serialized as celltype "
                                f"{celltype!r}: {exc}") from None
            cs = calculate_checksum(data)
            pins[name] = [celltype, None, cs]
            buffers[cs] = data
        for name, (pin, data) in self._modules_buffers().items():
            pins[name] = pin
            buffers[pin[2]] = data
        env = self.environment._to_lowlevel()
        return Definition(language=self._language, result_celltype=self._celltypes.get("result", "mixed"),
                          pins=pins, buffers=buffers, deps=deps, meta=dict(self._meta), scratch=bool(self.scratch),
                          env=env, local=self.local)

    def __call__(self, *args, **kwargs):
        return Transformation(self._definition(args, kwargs))

    def __repr__(self):
        return f"<{type(self).__name__} {getattr(self, '__name__', 'code')}>"


class DirectTransformer(Transformer):
    """What @direct makes: calling it runs (or finds) the transformation, returns its value."""

    def __call__(self, *args, **kwargs):
        from seamless.transformer.transformation import refuse_in_event_loop

        refuse_in_event_loop("func()")
        return Transformation(self._definition(args, kwargs)).run()


def _module_pin(definition):
    data = (plain_dumps(definition) + "\n").encode()
    return ["plain", "module", calculate_checksum(data)], data


def _flag(value):
    if value is not None and not isinstance(value, bool):
        raise TypeError(str(type(value)))
    return value


def delayed(func_or_code, language=None):
    """A transformer whose calls return Transformations (built, not run)."""
    if isinstance(func_or_code, Transformer):
        new = Transformer.__new__(Transformer)
        new._copy_from(func_or_code)
        return new
    return Transformer(func_or_code, language)


def direct(func_or_code, language=None):
    """A transformer whose calls run and return the value."""
    if isinstance(func_or_code, Transformer):
        new = DirectTransformer.__new__(DirectTransformer)
        new._copy_from(func_or_code)
        return new
    return DirectTransformer(func_or_code, language)
