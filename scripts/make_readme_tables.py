#!/usr/bin/env python
"""Write the README's result tables from the stored results, so that they cannot drift from them.

Each table sits between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` in README.md:

- ``ring8-seeds``: the multi-seed ring8 study (``data/checkpoints/ring8_seeds.json``), mean [95% interval];
- ``ring8-paired``: SA against simple from the same study, paired by seed, judged two-sided;
- ``ring8-paired-ip``: Input Perturbation against simple, the same way;
- ``ring8-gap``: the estimation gap from t = 100 of the same models;
- ``digits``: the shipped digit models' table (recorded in their checkpoint JSON) with the Frechet floor's
  spread over random halvings of the real digits;
- ``digits-seeds``: simple against SA over three training seeds per loss (``data/checkpoints/digits_seeds.json``),
  mean [95% interval] and the difference paired by seed.

    python scripts/make_readme_tables.py           # rewrite README.md in place
    python scripts/make_readme_tables.py --check   # exit 1 if README.md is out of date
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from seqdiff_kit.evaluate import frechet_floor_spread, shipped_table
from seqdiff_kit.seed_study import (DigitSeeds, SeedStudy, digit_seeds_markdown, gap_markdown, paired_markdown,
                                   summary_markdown)

README = Path(__file__).resolve().parent.parent / "README.md"
FLOOR_SEEDS = tuple(range(8))


def digits_table() -> str:
    """FD and confident share per step count for the shipped simple and SA models (one training seed, 1000
    samples per cell), then the floor: FD between two halves of the real digits over ``FLOOR_SEEDS``."""
    table = shipped_table()
    floor = frechet_floor_spread(FLOOR_SEEDS)
    lines = ["| DDIM steps | FD simple | FD SA | conf simple | conf SA |", "|---:|---:|---:|---:|---:|"]
    for j, s in enumerate(table.steps):
        lines.append(f"| {s} | {table.fd['simple'][j]:.2f} | {table.fd['sa'][j]:.2f} | "
                     f"{100 * table.confident['simple'][j]:.1f}% | {100 * table.confident['sa'][j]:.1f}% |")
    lines.append(f"| floor (real halves, {len(floor.seeds)} random halvings) | {floor.mean:.2f} +- {floor.sd:.2f} "
                 f"(range {floor.low:.2f} to {floor.high:.2f}) | | | |")
    return "\n".join(lines) + "\n"


def tables() -> dict[str, str]:
    study = SeedStudy.load()
    return {"ring8-seeds": summary_markdown(study), "ring8-paired": paired_markdown(study),
            "ring8-paired-ip": paired_markdown(study, a="IP"), "ring8-gap": gap_markdown(study),
            "digits": digits_table(), "digits-seeds": digit_seeds_markdown(DigitSeeds.load())}


def render(text: str, blocks: dict[str, str]) -> str:
    """``text`` with every marked block replaced; a missing marker is an error."""
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- table:{re.escape(name)} -->\n).*?(<!-- /table:{re.escape(name)} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no block <!-- table:{name} --> ... <!-- /table:{name} -->")
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether README.md is up to date")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    new = render(text, tables())
    if args.check:
        if new != text:
            print("README.md: the result tables differ from the stored results; run scripts/make_readme_tables.py")
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
