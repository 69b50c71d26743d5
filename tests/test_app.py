"""The explorer page of ``make app``: a stripped notebook that only builds ``explorer.Explorer`` (no code to read
on the page, no logic in the notebook), served by Voila on 127.0.0.1 with a token. The page itself is tested in
tests/browser/test_explorer_app.py; the widget in tests/test_explorer.py."""
import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app" / "explorer.ipynb"
sys.path.insert(0, str(ROOT / "scripts"))
import strip_notebooks  # noqa: E402


def test_explorer_notebook_is_stripped_and_only_builds_the_explorer():
    text = APP.read_text(encoding="utf-8")
    nb = json.loads(text)
    assert strip_notebooks.dumps(strip_notebooks.strip(nb)) == text
    code = [("".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) == 1
    tree = ast.parse(code[0])
    assert isinstance(tree.body[-1], ast.Expr) and ast.unparse(tree.body[-1]) == "Explorer(recipe='RING8')"
    assert not any(isinstance(n, (ast.FunctionDef, ast.For, ast.While, ast.ClassDef)) for n in ast.walk(tree))


def test_make_app_serves_it_on_localhost_with_a_token():
    make = (ROOT / "Makefile").read_text()
    rule = re.search(r"^app: .*\n\t(.+)$", make, re.M)
    assert rule, "the Makefile has an app target"
    cmd = rule.group(1)
    assert "voila app/explorer.ipynb" in cmd and "--Voila.ip=127.0.0.1" in cmd and "--token" in cmd
    # the template without the CDN's icon font, found through JUPYTER_PATH
    assert "--template=explorer" in cmd and cmd.startswith("JUPYTER_PATH=$(CURDIR)/app")
    template = ROOT / "app" / "voila" / "templates" / "explorer"
    assert json.loads((template / "conf.json").read_text())["base_template"] == "lab"
    assert "cdn.jsdelivr.net' not in line" in (template / "index.html.j2").read_text()
    assert "app" in re.search(r"^\.PHONY: (.+)$", make, re.M).group(1).split()
    assert '"voila' in (ROOT / "pyproject.toml").read_text()
