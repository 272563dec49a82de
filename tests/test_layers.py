"""Imports point one way: each module imports only from its own layer or the layers below it.

The order, bottom first, is the README's architecture table. Every import counts, including
those inside functions: a lazy import may load TensorFlow only when needed, never dodge a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "refiner"

# Bottom first. A module not listed by name belongs to its package's entry (``refiner.engines.*``).
LAYERS: list[tuple[str, list[str]]] = [
    ("errors, switches", ["refiner.errors", "refiner.failpoints", "refiner.progress", "refiner.schemas",
                          "refiner.text"]),
    ("JSON I/O", ["refiner.jsonio"]),
    ("space, trial", ["refiner.space", "refiner.trial", "refiner.fidelity"]),
    ("encoding, export", ["refiner.encoding", "refiner.export"]),
    ("run folder", ["refiner.store", "refiner.lock", "refiner.liveness"]),
    ("overrides, checks, console text", ["refiner.overrides", "refiner.check", "refiner.warm_start",
                                         "refiner.gate", "refiner.console"]),
    ("method", ["refiner.surrogate", "refiner.narrowing_method", "refiner.narrowing", "refiner.audit"]),
    ("engines", ["refiner.engines"]),
    ("loop", ["refiner.settings", "refiner.run_record", "refiner.tuner_calls", "refiner.loop", "refiner.config",
              "refiner"]),
    ("surfaces", ["refiner.cli", "refiner.validate", "refiner.review", "refiner.bench",
                  "app"]),
]


def layer_of(module: str) -> int:
    """The layer of ``module``: its own entry, else the nearest package listed."""
    parts = module.split(".")
    for n in range(len(parts), 1 if len(parts) > 1 else 0, -1):  # `refiner` itself names only __init__
        name = ".".join(parts[:n])
        for index, (_, members) in enumerate(LAYERS):
            if name in members:
                return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to the README's architecture table)")


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), ROOT / "app.py"])


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every ``refiner`` import in the file, at any depth, except those only
    a type checker runs (``if TYPE_CHECKING:``), which load nothing."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "refiner"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "refiner":
                continue
            # `from refiner import progress` imports the module refiner.progress, not the package.
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                    (PACKAGE.parent / Path(*sub.split("."))).is_dir()
                found.append((node.lineno, sub if is_module else node.module))
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_imports_point_down(path: Path) -> None:
    here = module_name(path)
    mine = layer_of(here)
    upward = [f"line {line}: {target} ({LAYERS[layer_of(target)][0]})"
              for line, target in imports_of(path)
              if target != "refiner" and layer_of(target) > mine]
    assert not upward, f"{here} ({LAYERS[mine][0]}) imports from a layer above it: " + "; ".join(upward)


def test_no_import_cycles() -> None:
    """Within a layer too: no module reaches itself through its imports."""
    graph = {module_name(p): {t for _, t in imports_of(p) if t != "refiner"} for p in modules()}

    def visit(node: str, trail: list[str]) -> None:
        for target in sorted(graph.get(node, ())):
            if target in trail:
                cycle = trail[trail.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target in graph:
                visit(target, [*trail, target])

    for start in sorted(graph):
        visit(start, [start])


def test_every_module_has_a_layer() -> None:
    for path in modules():
        layer_of(module_name(path))
