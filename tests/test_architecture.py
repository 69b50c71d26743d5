"""The package's import graph against the layers of docs/architecture.md: parsed with ``ast`` (lazy imports
inside functions count too), no module imports a higher layer, a layer's modules import each other in one
direction, nothing below the package root imports the root, and no private name crosses a module boundary."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "seqdiff_kit"
# lowest first; inside a layer a module may import only the modules listed before it
LAYERS = {
    "foundation": ["_runtime", "_validate", "_numeric", "_io", "_format", "_limits"],
    "core": ["schedule", "data", "denoisers", "losses", "samplers", "solvers"],
    "tools": ["checkpoint", "metrics", "classifier", "stats", "drift", "analysis", "ddp", "train"],
    "presentation": ["viz", "frontend", "widgets", "report"],
    "application": ["recipes", "evaluate", "experiments", "seed_study", "few_step", "demo", "exercises", "explorer"],
    "interface": ["cli"],
}
RANK = {m: (i, j) for i, mods in enumerate(LAYERS.values()) for j, m in enumerate(mods)}
LAYER_OF = {m: layer for layer, mods in LAYERS.items() for m in mods}


def modules() -> list[str]:
    return sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """``(imported package module or "__init__", imported names, line)`` for every import in ``module``."""
    out = []
    tree = ast.parse((PKG / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("seqdiff_kit")):
            parts = (node.module or "").split(".")
            target = parts[0] if node.level == 1 else (parts[1] if len(parts) > 1 else "")
            names = [a.name for a in node.names]
            if target:
                out.append((target, names, node.lineno))
            else:  # `from . import x`: a module x, or a name of the package root
                for name in names:
                    out.append((name, [], node.lineno) if (PKG / f"{name}.py").is_file()
                               else ("__init__", [name], node.lineno))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "seqdiff_kit":
                    out.append(("__init__", [], node.lineno))
                elif a.name.startswith("seqdiff_kit."):
                    out.append((a.name.split(".")[1], [], node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in imports(m)} for m in modules()}


def test_every_module_has_a_layer():
    assert set(modules()) == set(RANK), "place new modules in LAYERS here and in docs/architecture.md"


@pytest.mark.parametrize("module", modules())
def test_imports_flow_down_the_layers(module):
    bad = [f"{module}:{line} imports {target} ({LAYER_OF.get(target, 'the package root')})"
           for target, _, line in imports(module)
           if target == "__init__" or RANK[target] >= RANK[module]]
    assert not bad, bad


@pytest.mark.parametrize("module", modules())
def test_no_private_name_crosses_a_module(module):
    src = (PKG / f"{module}.py").read_text()
    bad = [f"{module}:{line} imports {target}.{name}" for target, names, line in imports(module) for name in names
           if name.startswith("_") and not name.startswith("__")]
    # module objects imported whole (`from . import viz`): no attribute access to their private names
    whole = {t for t, names, _ in imports(module) if not names and t != "__init__"}
    for node in ast.walk(ast.parse(src)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in whole
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            bad.append(f"{module}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not bad, bad


def test_the_documented_chain_is_the_real_one():
    """docs/architecture.md and the README state the same layers as this test."""
    root = PKG.parent
    arch = (root / "docs" / "architecture.md").read_text()
    for layer, mods in LAYERS.items():
        line = next((ln for ln in arch.splitlines() if ln.startswith(f"| {layer} |")), None)
        assert line is not None, f"docs/architecture.md has no row for the {layer} layer"
        assert [m.strip("` ") for m in line.split("|")[2].split(",")] == mods, line
    chain = " -> ".join(LAYERS)
    assert chain in arch and chain in (root / "README.md").read_text()


def test_metrics_takes_tensors_only():
    """``metrics`` reads no file: from the package it takes the argument checks, ``pow2_scale`` and the
    ``GaussianMixture`` class (a density, not data on disk); the digit metrics, which load the shipped classifier
    and digits, are ``classifier``'s."""
    allowed = {"_numeric": {"pow2_scale"}, "_validate": None, "data": {"GaussianMixture"}}
    for target, names, line in imports("metrics"):
        assert target in allowed, f"metrics:{line} imports {target}"
        assert allowed[target] is None or set(names) <= allowed[target], f"metrics:{line} imports {target}.{names}"
    src = (PKG / "metrics.py").read_text()
    calls = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
             for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call)}
    assert not calls & {"open", "load", "load_file", "read_text", "read_bytes", "Path"}, calls
