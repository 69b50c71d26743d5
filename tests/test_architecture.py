"""The package's import graph against the layers of docs/architecture.md, parsed with ``ast`` (lazy imports
inside functions count too) over every module of the package, subfolders included: no module imports a higher
layer, a layer's modules import each other in one direction, nothing below the package root imports the root,
no private name crosses a module boundary (imported by name, or reached through a module object under any
alias: ``from . import viz as v; v._x``), and no module imports a package module by name at run time
(``importlib.import_module``, ``__import__``), which would hide the edge from this test. The one exception is
the package root's PEP 562 ``__getattr__`` in ``__init__.py``, which imports the core modules on first use so
that ``import seqdiff_kit`` does not import torch; the core sits below every other layer, so nothing climbs.

The checker takes the package folder as an argument; the tests at the end plant each kind of violation in a
small package under ``tmp_path`` and see it caught."""
import ast
import textwrap
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "seqdiff_kit"
# lowest first; inside a layer a module may import only the modules listed before it
LAYERS = {
    "foundation": ["_runtime", "_validate", "_numeric", "_io", "_format", "_limits"],
    "core": ["schedule", "data", "denoisers", "losses", "samplers", "solvers"],
    "tools": ["checkpoint", "metrics", "classifier", "stats", "drift", "analysis", "ddp", "train"],
    "presentation": ["viz", "frontend", "widgets", "report"],
    "application": ["recipes", "runs", "evaluate", "experiments", "seed_study", "few_step", "demo", "exercises",
                    "explorer_engine", "explorer"],
    "interface": ["cli"],
}
RANK = {m: (i, j) for i, mods in enumerate(LAYERS.values()) for j, m in enumerate(mods)}
LAYER_OF = {m: layer for layer, mods in LAYERS.items() for m in mods}


# ---------------------------------------------------------------------------------------------- the checker
def module_files(pkg: Path = PKG) -> dict[str, Path]:
    """Every module below the root by its dotted name (``viz``, ``sub.mod``; a subpackage's ``__init__.py`` is
    ``sub``), and the root's own ``__init__.py`` as ``__init__``."""
    out = {}
    for p in sorted(pkg.rglob("*.py")):
        parts = p.relative_to(pkg).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts == ("__init__",):
            out["__init__"] = p
        else:
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def modules(pkg: Path = PKG) -> list[str]:
    return sorted(m for m in module_files(pkg) if m != "__init__")


class Graph(ast.NodeVisitor):
    """One module's imports of package modules, the local names bound to package modules (aliases
    included), its private accesses across modules and its run-time imports of package modules."""

    DYNAMIC = {"import_module", "__import__"}

    def __init__(self, pkg: Path, module: str):
        self.files, self.module, self.root = module_files(pkg), module, pkg.name
        path = self.files[module]
        # the package a relative import starts from: the module's folder (a package's own name for __init__)
        self.package = module.split(".") if path.name == "__init__.py" and module != "__init__" else \
            ([] if module == "__init__" else module.split(".")[:-1])
        self.edges: list[tuple[str, list[str], int]] = []  # (target module or "__init__", names, line)
        self.bound: dict[str, str] = {}                     # local name -> package module
        self.dynamic: list[tuple[int, str]] = []
        self.dynamic_names = set(self.DYNAMIC)
        self.functions: list[str] = []
        self.tree = ast.parse(path.read_text(encoding="utf-8"))
        self.visit(self.tree)
        for _ in range(3):  # plain assignments of module objects (`v = viz`), chains included
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    target = self.resolve(node.value)
                    if target:
                        self.bound[node.targets[0].id] = target

    def _is_module(self, parts: list[str]) -> str | None:
        name = ".".join(parts)
        return name if name in self.files and name != "__init__" else None

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            if node.level - 1 > len(self.package):
                return
            base = self.package[:len(self.package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
        elif node.module and node.module.split(".")[0] == self.root:
            base = node.module.split(".")[1:]
        else:
            if node.module == "importlib":
                self.dynamic_names |= {a.asname or a.name for a in node.names if a.name in self.DYNAMIC}
            return
        owner = self._is_module(base) or ("__init__" if not base else ".".join(base))
        for a in node.names:
            sub = self._is_module(base + [a.name])
            if sub:
                self.edges.append((sub, [], node.lineno))
                self.bound[a.asname or a.name] = sub
            else:
                self.edges.append((owner, [a.name], node.lineno))

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            parts = a.name.split(".")
            if parts[0] != self.root:
                continue
            target = self._is_module(parts[1:]) or "__init__"
            self.edges.append((target, [], node.lineno))
            if a.asname:
                self.bound[a.asname] = target
            else:  # `import seqdiff_kit.viz` binds the root; `seqdiff_kit.viz` resolves through it
                self.bound[self.root] = "__init__"

    def visit_FunctionDef(self, node) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
        if name in self.dynamic_names:
            arg = node.args[0] if node.args else None
            third_party = (isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                           and not arg.value.startswith(".") and arg.value.split(".")[0] != self.root)
            root_lazy = self.module == "__init__" and self.functions[:1] == ["__getattr__"]
            if not third_party and not root_lazy:
                self.dynamic.append((node.lineno, ast.unparse(node)))
        self.generic_visit(node)

    def resolve(self, expr) -> str | None:
        """The package module ``expr`` names (``v``, ``seqdiff_kit.viz``, ``sub.mod``), or None."""
        if isinstance(expr, ast.Name):
            return self.bound.get(expr.id)
        if isinstance(expr, ast.Attribute):
            owner = self.resolve(expr.value)
            if owner is not None:
                return self._is_module(([] if owner == "__init__" else owner.split(".")) + [expr.attr])
        return None

    def private_uses(self) -> list[str]:
        """Private names (``_x``, not dunders) of other modules: imported by name, or read off a module object."""
        def private(n: str) -> bool:
            return n.startswith("_") and not n.startswith("__")

        bad = [f"{self.module}:{line} imports {target}.{n}" for target, names, line in self.edges
               for n in names if private(n) and target != self.module]
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and private(node.attr):
                owner = self.resolve(node.value)
                if owner is not None and owner != self.module:
                    bad.append(f"{self.module}:{node.lineno} uses {owner}.{node.attr}")
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr")
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and private(node.args[1].value)):
                owner = self.resolve(node.args[0])
                if owner is not None and owner != self.module:
                    bad.append(f"{self.module}:{node.lineno} uses {owner}.{node.args[1].value} through getattr")
        return bad


def imports(module: str, pkg: Path = PKG) -> list[tuple[str, list[str], int]]:
    """``(imported package module or "__init__", imported names, line)`` for every import in ``module``."""
    return Graph(pkg, module).edges


def layer_violations(module: str, pkg: Path = PKG, layers: dict = LAYERS) -> list[str]:
    rank = {m: (i, j) for i, mods in enumerate(layers.values()) for j, m in enumerate(mods)}
    layer_of = {m: layer for layer, mods in layers.items() for m in mods}
    return [f"{module}:{line} imports {target} ({layer_of.get(target, 'the package root')})"
            for target, _, line in imports(module, pkg)
            if target == "__init__" or target not in rank or rank[target] >= rank[module]]


def violations(pkg: Path, layers: dict) -> list[str]:
    """Every rule over every module of the package at ``pkg``."""
    placed = {m for mods in layers.values() for m in mods}
    out = [f"{m} has no layer" for m in modules(pkg) if m not in placed]
    for m in modules(pkg):
        graph = Graph(pkg, m)
        out += (layer_violations(m, pkg, layers) if m in placed else []) + graph.private_uses()
        out += [f"{m}:{line} imports a module at run time: {call}" for line, call in graph.dynamic]
    root = Graph(pkg, "__init__")
    out += [f"__init__:{line} imports a module at run time: {call}" for line, call in root.dynamic]
    return out + root.private_uses()


# ---------------------------------------------------------------------------------------------- the package
def test_every_module_has_a_layer():
    assert set(modules()) == set(RANK), "place new modules in LAYERS here and in docs/architecture.md"


@pytest.mark.parametrize("module", modules())
def test_imports_flow_down_the_layers(module):
    bad = layer_violations(module)
    assert not bad, bad


@pytest.mark.parametrize("module", modules() + ["__init__"])
def test_no_private_name_crosses_a_module(module):
    bad = Graph(PKG, module).private_uses()
    assert not bad, bad


@pytest.mark.parametrize("module", modules() + ["__init__"])
def test_no_module_imports_a_package_module_at_run_time(module):
    bad = Graph(PKG, module).dynamic
    assert not bad, bad


def test_the_root_imports_its_core_lazily_and_only_the_core():
    """The one allowed run-time import: the root's ``__getattr__``, whose module names are ``_CORE``'s values,
    the core layer (below everything, so no module climbs through the root)."""
    tree = ast.parse((PKG / "__init__.py").read_text(encoding="utf-8"))
    core = next(ast.literal_eval(n.value) for n in tree.body
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "_CORE")
    assert set(core.values()) <= set(LAYERS["core"])
    assert any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body)


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


# ---------------------------------------------------------------------------------------------- planted violations
PLANT_LAYERS = {"low": ["low"], "mid": ["mid", "sub", "sub.deep"], "high": ["high"]}
CLEAN = {
    "__init__.py": """
        def __getattr__(name):
            import importlib
            return importlib.import_module(f".{name}", __name__)
        """,
    "low.py": "_x = 1\ny = 2\n",
    "mid.py": """
        import importlib
        import json
        from . import low as v
        from .low import y
        print(v.y, y, importlib.import_module("json"), getattr(v, "y"))
        _mine = 1
        print(_mine)
        """,
    "sub/__init__.py": "",
    "sub/deep.py": "from ..low import y\nfrom .. import low\nprint(low.y, y)\n",
    "high.py": "from .sub import deep\nfrom . import mid\nprint(deep, mid)\n",
}


def plant(tmp_path: Path, **changes: str) -> Path:
    """The small package ``CLEAN`` (with ``changes``: file name -> source, "/" for "__") under ``tmp_path``."""
    pkg = tmp_path / "seqdiff_kit"
    files = dict(CLEAN)
    files.update({k.replace("__", "/") if k != "__init__" else "__init__.py": v for k, v in changes.items()})
    for name, src in files.items():
        path = pkg / (name if name.endswith(".py") else name + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(src), encoding="utf-8")
    return pkg


def test_the_planted_package_is_clean(tmp_path):
    assert violations(plant(tmp_path), PLANT_LAYERS) == []


@pytest.mark.parametrize("files, caught", [
    # a module in a subfolder is found: unplaced, or importing upwards
    ({"sub__other": "x = 1\n"}, "sub.other has no layer"),
    ({"sub__deep": "from .. import high\n"}, "sub.deep:1 imports high"),
    ({"sub__deep": "import seqdiff_kit.high\n"}, "sub.deep:1 imports high"),
    ({"low": "from .sub.deep import y\n"}, "low:1 imports sub.deep"),
    ({"sub__deep": "from .. import anything\n"}, "sub.deep:1 imports __init__"),
])
def test_subfolders_are_checked(tmp_path, files, caught):
    assert caught in " ".join(violations(plant(tmp_path, **files), PLANT_LAYERS))


@pytest.mark.parametrize("src, caught", [
    ("from . import low as v\nv._x\n", "mid:2 uses low._x"),
    ("from . import low\nlow._x\n", "mid:2 uses low._x"),
    ("import seqdiff_kit.low as w\nw._x\n", "mid:2 uses low._x"),
    ("import seqdiff_kit.low\nseqdiff_kit.low._x\n", "mid:2 uses low._x"),
    ("from . import low as v\nz = v\nz._x\n", "mid:3 uses low._x"),
    ("from . import low as v\ngetattr(v, '_x')\n", "mid:2 uses low._x through getattr"),
    ("def f():\n    from .low import _x as public\n    return public\n", "mid:2 imports low._x"),
])
def test_private_names_are_refused_through_any_alias(tmp_path, src, caught):
    assert caught in violations(plant(tmp_path, mid=src), PLANT_LAYERS)


@pytest.mark.parametrize("module, src", [
    ("mid", "import importlib\nimportlib.import_module('.low', __package__)\n"),
    ("mid", "import importlib as il\nil.import_module('seqdiff_kit.low')\n"),
    ("mid", "from importlib import import_module as im\nim('seqdiff_kit.high')\n"),
    ("mid", "__import__('seqdiff_kit.low')\n"),
    ("mid", "import importlib\nname = 'low'\nimportlib.import_module(name)\n"),  # not provably third-party
    ("sub__deep", "import importlib\nimportlib.import_module('..high', 'seqdiff_kit.sub')\n"),
    ("__init__", "def load(name):\n    import importlib\n    return importlib.import_module(name)\n"),
])
def test_run_time_imports_of_package_modules_are_refused(tmp_path, module, src):
    found = violations(plant(tmp_path, **{module: src}), PLANT_LAYERS)
    assert any("imports a module at run time" in v for v in found), found
