"""The import layers ARCHITECTURE.md promises, checked by walking every module's imports (ast).

Dependencies point down: cli -> pipeline/report -> steps -> arch, checkpoint, data, bench ->
types, errors. A forbidden edge fails here with the file and line that adds it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "squeeze"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every import, lazy ones included."""
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges += [(module, alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                edges.append((module, node.module, node.lineno))
                # "from squeeze.report import cells" imports squeeze.report.cells
                edges += [(module, f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return edges


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# Every module and package of squeeze except the CLI itself.
BELOW_CLI = sorted(
    {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.glob("*")}
    - {"cli", "__pycache__", "__init__", "__main__"}  # the entry point may import the CLI
)
CLI_ONLY = ("squeeze.cli", "typer", "rich.console")
# (importer, imported): what is never allowed.
FORBIDDEN = [
    *[(f"squeeze.{below}", target) for below in BELOW_CLI for target in CLI_ONLY],
    ("squeeze.report", "squeeze.sweep"),
    ("squeeze.sweep", "squeeze.report"),
    ("squeeze.report", "squeeze.pipeline"),
    ("squeeze.sweep", "squeeze.pipeline"),
    # Loading sits below the steps: it never reaches up into pruning.
    ("squeeze.checkpoint", "squeeze.prune"),
    ("squeeze.arch", "squeeze.prune"),
    # Configs and the registry stay light: the CLI reads them at start-up.
    ("squeeze.config", "torch"),
    ("squeeze.registry", "torch"),
    ("squeeze.dataspec", "numpy"),
]


def test_no_forbidden_import_edges():
    found = [
        f"{importer} imports {imported} (line {line})"
        for importer, imported, line in _imports()
        for low, high in FORBIDDEN
        if _within(importer, low) and _within(imported, high)
    ]
    assert found == []


def test_the_walk_sees_lazy_imports():
    """The walk must not miss imports inside functions, where squeeze keeps heavy ones."""
    edges = {(a, b) for a, b, _ in _imports()}
    assert ("squeeze.runner", "squeeze.bench.run") in edges  # imported inside _bench


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
