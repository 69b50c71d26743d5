"""Every third-party module that the library and the notebooks import is declared for pip and for conda."""
import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# import name -> (pip distribution, conda-forge package)
KNOWN = {
    "torch": ("torch", "pytorch-cpu"), "numpy": ("numpy", "numpy"), "einops": ("einops", "einops"),
    "safetensors": ("safetensors", "safetensors"), "tqdm": ("tqdm", "tqdm"), "plotly": ("plotly", "plotly"),
    "ipywidgets": ("ipywidgets", "ipywidgets"), "anywidget": ("anywidget", "anywidget"),
    "IPython": ("ipykernel", "ipykernel"), "scipy": ("scipy", "scipy"), "traitlets": ("traitlets", "traitlets"),
    "distributed": ("distributed", "distributed"),  # the dist extra: `seqdiff experiment --scheduler`
}
STDLIB = set(sys.stdlib_module_names)


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    sources = [(p, p.read_text()) for p in (ROOT / "seqdiff_kit").glob("*.py")]
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
        sources.append((nb, code))
    for path, src in sources:
        for mod in imported_modules(src) - STDLIB - {"seqdiff_kit", "__future__"}:
            found.setdefault(mod, set()).add(path.name)
    return found


def test_every_import_is_known():
    unknown = {m: f for m, f in third_party_imports().items() if m not in KNOWN}
    assert not unknown, f"add these imports to KNOWN, pyproject.toml and environment.yml: {unknown}"


def test_every_import_is_declared_in_pyproject_and_environment():
    pyproject = (ROOT / "pyproject.toml").read_text()
    env = (ROOT / "environment.yml").read_text()
    missing = []
    for module in sorted(third_party_imports()):
        pip_name, conda_name = KNOWN[module]
        if not re.search(rf'"{re.escape(pip_name)}[<>=!~ \[",]', pyproject):
            missing.append(f"{pip_name} (for import {module}) missing from pyproject.toml")
        if not re.search(rf"^\s*- {re.escape(conda_name)}\b", env, re.M):
            missing.append(f"{conda_name} (for import {module}) missing from environment.yml")
    assert not missing, missing


def test_torch_is_pinned_in_the_makefile_and_cpu_only_in_conda():
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()
    env = (ROOT / "environment.yml").read_text()
    assert "pytorch-cpu" in env and "cuda" not in env.lower()


def test_pyproject_reads_without_a_setuptools_deprecation_warning():
    """The install printed setuptools' banner for the table form of project.license three times: the SPDX string
    form (setuptools >= 77, which build-system requires) reads without any warning."""
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    assert 'requires = ["setuptools>=77"]' in (ROOT / "pyproject.toml").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert dist.metadata.license_expression == "MIT"


def test_the_lab_extension_is_installed_by_pip_and_by_make():
    """labextension/ (the redraw after a reload's race, tests/browser/test_dashboards.py) reaches JupyterLab's
    extension folder: pyproject's data-files for a plain install (a wheel, conda's environment), a copy in the
    Makefile for the editable one, which skips data-files; the extension's own name and load path agree."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    dest = "share/jupyter/labextensions/seqdiff-kit-reload"
    files = dict(apply_configuration(Distribution(), ROOT / "pyproject.toml").data_files)
    meta = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert meta["name"] == "seqdiff-kit-reload" and meta["jupyterlab"]["_build"]["extension"] == "./extension"
    load = Path(meta["jupyterlab"]["_build"]["load"])
    assert files[dest] == ["labextension/package.json"]
    assert files[f"{dest}/{load.parent}"] == [f"labextension/{load}"]
    assert all((ROOT / src).is_file() for srcs in files.values() for src in srcs)
    makefile = (ROOT / "Makefile").read_text()
    assert f"LABEXT := $(VENV)/{dest}" in makefile and "cp -R labextension/. $(LABEXT)" in makefile
    assert "- .\n" in (ROOT / "environment.yml").read_text() and "-e ." not in (ROOT / "environment.yml").read_text()
