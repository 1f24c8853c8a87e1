"""The layers of lib/seamless import only downward, and no module imports itself back.

Every import counts, also those inside functions (a lazy import is still a dependency).
`from package import name` depends on package.name when that is a module, else on
the package. The layers (docs/ARCHITECTURE.md), bottom first:
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib", "seamless")

LAYERS = [
    ("base", ["seamless.version", "seamless.checksum", "seamless.files", "seamless.identity", "seamless.conda",
              "seamless.sizes"]),
    ("storage", ["seamless.store"]),
    ("values", ["seamless.cache", "seamless.buffer"]),
    # the wrapper's parameter builder is pure configuration knowledge (no dask import)
    ("configuration", ["seamless.config.*", "seamless.launch", "seamless.dask.parameters", "seamless.dask.batch"]),
    ("session", ["seamless.session", "seamless.config", "seamless.dask.connect"]),
    # the Dask backend: its client, the task, the worker plugin, the dummy scheduler
    ("execution", ["seamless.execution", "seamless.dask.client", "seamless.dask.tasks", "seamless.dask.worker",
                   "seamless.dask.permissions", "seamless.dask.dummy"]),
    ("faces", ["seamless.transformer", "seamless.run", "seamless.cli", "seamless.servers", "seamless.transfer",
               "seamless.dask"]),
    ("package", ["seamless"]),
]


def modules():
    found = {}
    for dirpath, _, filenames in os.walk(ROOT):
        for filename in filenames:
            if filename.endswith(".py"):
                path = os.path.join(dirpath, filename)
                name = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                found[name.removesuffix(".__init__")] = path
    return found


def layer_of(module):
    """The layer of a module: an exact name wins, then the longest prefix (`x.*`: the
    submodules of x only)."""
    best = None
    for number, (_, names) in enumerate(LAYERS):
        for name in names:
            if name.endswith(".*"):
                matches, length = module.startswith(name[:-1]), len(name)
            else:
                matches, length = module == name or module.startswith(name + "."), len(name)
                length += 1 if module == name else 0
            if matches and (best is None or length > best[0]):
                best = (length, number)
    return best[1] if best else None


def imports(mods):
    graph = {}
    for module, path in mods.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in mods else base)
        graph[module] = {t for t in targets if t in mods and t != module}
    return graph


MODULES = modules()
GRAPH = imports(MODULES)


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_imports_go_only_downward():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in sorted(GRAPH.items()) for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert upward == []


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_the_checker_sees_cycles_and_upward_imports():
    assert {"seamless.execution.compute", "seamless.cli"} <= GRAPH["seamless.run.cli"]  # top-level and lazy
    assert "seamless.execution.wire" in GRAPH["seamless.execution.pool"]  # from package import module
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("seamless.store.directory") < layer_of("seamless.config.resolve") < layer_of("seamless.config")
    assert layer_of("seamless.config") < layer_of("seamless.execution.compute") < layer_of("seamless.run.cli")


@pytest.mark.parametrize("module", ["seamless.run.cli", "seamless.execution.compute", "seamless.transformer"])
def test_dask_is_imported_only_by_the_dask_backend(module):
    def reach(start, seen):
        for t in GRAPH.get(start, ()):
            if t not in seen:
                seen.add(t)
                reach(t, seen)
        return seen

    # seamless.dask.connect (the pure-Dask client behind seamless.config.dask_client()) is
    # reached only through that function's lazy import, never on these modules' own paths
    assert not [m for m in reach(module, {module})
                if m.startswith("seamless.dask") and layer_of(m) == layer_of("seamless.dask")]
    for m, path in MODULES.items():
        if not m.startswith("seamless.dask"):
            with open(path) as f:
                tree = ast.parse(f.read())
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level]
            assert not [n for n in names if n.split(".")[0] in ("dask", "distributed", "dask_jobqueue")], m
