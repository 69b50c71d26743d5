"""The README's result tables are generated from the stored results (scripts/make_readme_tables.py): the
README must hold exactly what the script writes today."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import make_readme_tables  # noqa: E402


def test_readme_tables_match_the_stored_results():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert make_readme_tables.render(text, make_readme_tables.tables()) == text, \
        "README.md is out of date: run python scripts/make_readme_tables.py"


def test_render_replaces_marked_blocks_only_and_refuses_a_missing_one():
    text = "a\n<!-- table:x -->\nold\n<!-- /table:x -->\nb\n"
    assert make_readme_tables.render(text, {"x": "new\n"}) == "a\n<!-- table:x -->\nnew\n<!-- /table:x -->\nb\n"
    with pytest.raises(ValueError, match="table:y"):
        make_readme_tables.render(text, {"y": "z\n"})
