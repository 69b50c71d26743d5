"""docs/report.png: the top of the report that ``seqdiff demo`` writes, as headless Chromium shows it.

    python scripts/screenshot_report.py [--out docs/report.png]

Runs the demo (shipped checkpoints) into a temporary folder, opens its report.html in the system's Chromium
(playwright, as the browser tests do; nothing is downloaded), waits for every figure, and saves a 1200 x 1600
screenshot as a palette PNG (small in the repository). Needs ``chromium`` and the test extra's playwright.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "report.png"))
    args = parser.parse_args(argv)
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        print("screenshot_report: error: no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 1
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from seqdiff_kit.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(Path(tmp) / "demo", progress=False, echo=None)
        shot = Path(tmp) / "shot.png"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            page.goto(result.report.resolve().as_uri(), wait_until="load")
            page.wait_for_function("() => { const p = document.querySelectorAll('.js-plotly-plot'); "
                                   "return p.length > 0 && Array.from(p).every(g => g._fullLayout); }",
                                   timeout=60_000)
            page.wait_for_timeout(500)  # the last figure's drawing settles
            page.screenshot(path=str(shot))
            browser.close()
        Image.open(shot).convert("RGB").quantize(colors=256).save(args.out, optimize=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
