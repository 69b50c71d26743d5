#!/usr/bin/env python
"""Strip notebooks for committing: no outputs, no execution counts, no widget state, no metadata but cell tags.

    python scripts/strip_notebooks.py notebooks/*.ipynb           # rewrite in place
    python scripts/strip_notebooks.py --check notebooks/*.ipynb   # exit 1 (and list them) if any needs stripping

Notebook-level metadata keeps only a fixed ``kernelspec`` (so Jupyter opens the notebook with the default
Python kernel); the widget state, language_info versions and everything else go. Cell metadata keeps only a
sorted, de-duplicated ``tags`` list (nbval reads ``nbval-ignore-output``; papermill reads ``parameters``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def strip(nb: dict) -> dict:
    """The stripped copy of a notebook dict (nbformat 4 JSON)."""
    if not isinstance(nb, dict) or "cells" not in nb:
        raise ValueError("not a Jupyter notebook: expected a JSON object with a 'cells' list")
    out = {"cells": [], "metadata": {"kernelspec": dict(KERNELSPEC)},
           "nbformat": nb.get("nbformat", 4), "nbformat_minor": nb.get("nbformat_minor", 5)}
    for k, cell in enumerate(nb["cells"]):
        tags = sorted(set(cell.get("metadata", {}).get("tags", [])))
        new = {"cell_type": cell["cell_type"]}
        if "id" in cell:
            new["id"] = cell["id"]
        new["metadata"] = {"tags": tags} if tags else {}
        source = cell.get("source", "")
        new["source"] = "".join(source) if isinstance(source, list) else source
        if cell["cell_type"] == "code":
            new["execution_count"] = None
            new["outputs"] = []
        elif "attachments" in cell:
            new["attachments"] = cell["attachments"]
        out["cells"].append(new)
    return out


def dumps(nb: dict) -> str:
    """Serialise like Jupyter does (one-space indent, sources split into lines, trailing newline)."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        src = cell["source"]
        cell["source"] = src.splitlines(keepends=True) if isinstance(src, str) else src
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only report notebooks that need stripping")
    args = parser.parse_args(argv)
    dirty = []
    for path in args.paths:
        text = path.read_text(encoding="utf-8")
        new = dumps(strip(json.loads(text)))
        if new != text:
            dirty.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in dirty:
        print(f"{'needs stripping' if args.check else 'stripped'}: {path}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
