"""The shape of the code, read from the source with `ast`: no import cycle, data flowing down the layers of
bench/, methods/ free of the harness, imports at module level, and small files and functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# bench/'s layers, top to bottom: a module imports its own layer or the ones below it, never one above.
LAYERS = [
    {"__main__", "cli", "benchmarks"},
    {"api"},
    {"listing", "report"},
    {"measure"},
    {"runs"},
    {"results"},
    {"metrics"},
    {"data"},
    {"config"},
    {"errors", "files", "shard", "plots"},
]
# Third-party packages that may be imported inside a function: heavy, and needed on a few paths only.
LAZY = {"torch_fidelity", "torchvision", "matplotlib", "scipy", "torchdiffeq", "huggingface_hub", "tensorboard"}
# The one first-party import inside a function: the CLI loads bench.api when a command runs, so that
# `bench --help` does not wait for torch and diffusers.
LAZY_FIRST_PARTY = {("bench.cli", "bench.api")}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
LONG_FUNCTIONS = {("bench.runs.train", "train")}  # the training loop reads best in one piece


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(list(ROOT.glob("bench/**/*.py")) + list(ROOT.glob("methods/**/*.py"))):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The first-party modules an import statement names (a `from pkg import name` of a submodule counts
    as that submodule)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def _imports() -> dict[str, list[tuple[str, ast.AST, bool]]]:
    """module -> [(imported first-party module or third-party top name, node, inside a function)]."""
    out = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        found = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = _resolve(module, path, node)
                if not targets:  # third party
                    top = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name) or ""
                    targets = [top.split(".")[0]]
                found += [(t, node, id(node) in inner) for t in targets]
        out[module] = found
    return out


IMPORTS = _imports()
GRAPH = {m: {t for t, _, _ in found if t in MODULES and t != m} for m, found in IMPORTS.items()}


def _cycle() -> list[str] | None:
    """One import cycle among first-party modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state and (found := visit(m)):
            return found
    return None


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "bench" or len(parts) < 2:
        return None
    return next(i for i, names in enumerate(LAYERS) if parts[1] in names)


def test_the_reader_sees_every_module_and_a_known_cycle():
    """The checks below are only as good as the graph: it holds every module and finds a planted cycle."""
    assert "bench.api" in GRAPH and "methods.registry" in GRAPH and "bench.report.render" in GRAPH
    assert "bench.config.run" in GRAPH["bench.config.resolve"]
    saved = dict(GRAPH)
    try:
        GRAPH["bench.errors"] = GRAPH["bench.errors"] | {"bench.api"}
        assert _cycle() is not None
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def test_no_import_cycle():
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_methods_never_import_the_harness():
    """methods/ is pure PyTorch algorithms: bench/ builds on it, never the other way."""
    banned = {"accelerate", "pandas", "matplotlib", "typer"}
    bad = [(m, t) for m, found in IMPORTS.items() if m.startswith("methods")
           for t, _, _ in found if t.startswith("bench") or t in banned]
    assert not bad, bad


def test_data_flows_down_the_layers():
    """Every bench/ layer package exists and is known; a module imports only its own layer and those below."""
    packages = {p.name.removesuffix(".py") for p in (ROOT / "bench").iterdir()
                if p.name != "__pycache__" and not p.name.startswith("__")}
    assert packages <= set().union(*LAYERS), sorted(packages - set().union(*LAYERS))
    bad = [(m, t) for m, targets in GRAPH.items() for t in targets
           if _layer(m) is not None and _layer(t) is not None and _layer(t) < _layer(m)]
    assert not bad, bad


def test_imports_sit_at_module_level():
    """An import inside a function hides a dependency (often a cycle dodged); only heavy third-party
    packages used on a few paths, and the CLI's bench.api, are imported late."""
    bad = [(m, t) for m, found in IMPORTS.items() for t, _, inner in found
           if inner and t not in LAZY and (m, t) not in LAZY_FIRST_PARTY]
    assert not bad, bad


def test_package_inits_import_nothing():
    """A bench/ package's __init__ holds its docstring only, so importing one module never loads its siblings."""
    bad = [m for m, found in IMPORTS.items() if m.startswith("bench") and MODULES[m].name == "__init__.py" and found]
    assert not bad, bad


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("bench")))
def test_files_and_functions_stay_small(module):
    path = MODULES[module]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_FILE_LINES})"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (module, node.name) not in LONG_FUNCTIONS:
            n = node.end_lineno - node.lineno + 1
            assert n <= MAX_FUNCTION_LINES, f"{module}.{node.name} has {n} lines (at most {MAX_FUNCTION_LINES})"
