"""The layers ARCHITECTURE.md promises, checked by walking every module's imports (ast).

The folders of src/squeeze are the layer diagram: each has a rank and imports only from ranks at
or below its own (lazy imports inside functions count; ``if TYPE_CHECKING:`` imports, which never
run, do not). No two modules import each other, directly or round a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "squeeze"

# Lowest first. A new folder needs a rank here; the test below fails until it has one.
RANKS = {
    "core": 0,  # errors, result types, configs, formatting, statistics, faults, atomic output
    "model": 1,  # architecture specs, loading and saving, shapes, sizes, runtimes, info
    "data": 2,  # data specs, readers, examples and splits, encoding, assets
    "artifact": 3,  # whatever squeeze reads or writes, opened and sized one way
    "measure": 4,  # metrics and latency of artifacts
    "train": 5,  # the training loop
    "engine": 6,  # registry, step types, runner, gates
    "methods": 7,  # prune, distill, quantize, export, finetune: configs plus handlers
    "report": 8,  # results and their report folder
    "plan": 9,  # recipes, sweeps, the pipeline, the cache, tune, the executor
    "cli": 10,  # thin Typer commands
    "": 11,  # the package itself: __init__ (lazy public API), __main__, api
}


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p) for p in SRC.rglob("*.py")}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:``: imports for annotations, never run."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for sub in node.body for n in ast.walk(sub)}
    return skip


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported name, line) for every import that runs, lazy ones included;
    ``from squeeze.report import cells`` yields squeeze.report and squeeze.report.cells."""
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module(path)
        tree = ast.parse(path.read_text())
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                edges += [(module, alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                edges.append((module, node.module, node.lineno))
                edges += [(module, f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return edges


def _squeeze_module(name: str) -> str | None:
    """The squeeze module an imported name lives in (an attribute's module), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANKS else ""


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for importer, imported, _ in _imports():
        target = _squeeze_module(imported)
        if target not in (None, importer, "squeeze"):
            graph[importer].add(target)
    return graph


def test_every_folder_has_a_rank():
    folders = {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders - RANKS.keys() == set()
    loose = {p.name for p in SRC.glob("*.py")} - {"__init__.py", "__main__.py", "api.py"}
    assert loose == set(), "the top level holds packages only"


def test_no_import_reaches_a_higher_layer():
    upward = sorted(
        f"{importer} (rank {RANKS[_layer(importer)]}) imports {imported} "
        f"(rank {RANKS[_layer(target)]}), line {line}"
        for importer, imported, line in _imports()
        if (target := _squeeze_module(imported)) is not None
        and RANKS[_layer(target)] > RANKS[_layer(importer)]
    )
    assert upward == []


def test_no_import_cycles():
    """Tarjan's strongly connected components over the module graph: any with two or more
    modules is a cycle."""
    graph, index, low, stack, on_stack, cycles = _graph(), {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(" <-> ".join(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# (importer, imported) edges the ranks allow but the design does not.
FORBIDDEN = [
    # Only the CLI talks to the terminal; the library never imports it or typer.
    *[(f"squeeze.{layer}", target) for layer in RANKS if layer not in ("cli", "")
      for target in ("squeeze.cli", "typer", "rich.console")],
    # Configs and the registry stay light: the CLI reads them at start-up.
    ("squeeze.core.config", "torch"),
    ("squeeze.engine.registry", "torch"),
    ("squeeze.data.spec", "numpy"),
]  # fmt: skip


def test_no_forbidden_import_edges():
    found = [
        f"{importer} imports {imported} (line {line})"
        for importer, imported, line in _imports()
        for low, high in FORBIDDEN
        if _within(importer, low) and _within(imported, high)
    ]
    assert found == []


def test_the_walk_sees_lazy_imports_and_skips_type_checking_ones():
    """The walk must not miss imports inside functions, where squeeze keeps heavy ones, and must
    not count annotation-only imports, which never run."""
    edges = {(a, b) for a, b, _ in _imports()}
    assert ("squeeze.engine.runner", "squeeze.measure.bench") in edges  # imported inside _bench
    assert ("squeeze.core.types", "squeeze.model.loaded") not in edges  # under TYPE_CHECKING


@pytest.mark.parametrize(
    "module", ["squeeze.cli._options", "squeeze.cli.prune", "squeeze.cli.main"]
)
def test_cli_modules_import_no_heavy_library_at_start_up(module):
    """``squeeze --help`` must not pay for torch, numpy or transformers."""
    import subprocess
    import sys

    code = (
        f"import sys, {module}; heavy = [m for m in ('torch', 'numpy', 'transformers', "
        "'onnxruntime', 'rich.console') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_command_help_loads_nothing_heavy():
    """``squeeze CMD --help`` parses and prints without torch, numpy, rich or pydantic (which
    typer pulls in to coerce any option value that is not already of its type)."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom squeeze.cli.main import app\n"
        "try:\n    app(['prune', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numpy', 'rich.console', 'pydantic') if m in sys.modules]\n"
        "print('HEAVY', ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY"
