"""The HTML report as a browser shows it: docs/report-screenshot.png, from a tiny tune.

A tiny BERT is fine-tuned on the order task (which of two tokens comes first; the tests' own
task), then `squeeze tune` searches it with a 2-point budget judged on the upper end of the 95%
interval, and headless Chromium screenshots its report/index.html. The page is what a reader of
a shared report sees first (the selected variant, the rule and gates in words, why faster
variants were not selected), so look at the image after a change to report/html.py or
report/plots.py. About four minutes on 2 CPU cores; needs Chromium (Debian: `apt-get install
chromium`).

    python benchmarks/report_screenshot.py [--out docs/report-screenshot.png] [--work DIR]
    make report-screenshot
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The width of a laptop browser window; tall enough for the table, the selection and the plots.
WINDOW = "1280,2000"
MAX_BYTES = 300_000  # committed to the repository: kept small


def squeeze(*args: str | Path) -> None:
    subprocess.run([sys.executable, "-m", "squeeze", *map(str, args)], check=True)


def build_report(work: Path) -> Path:
    """Fine-tune the tiny model and tune it; returns the report's index.html."""
    from squeeze.core.types import Task
    from squeeze.model.tiny import build_tiny, write_order_task

    work.mkdir(parents=True, exist_ok=True)
    data = write_order_task(work / "order.csv", 3000, seed=0)
    base = build_tiny("bert", work / "base", task=Task.MASKED_LM)
    model = work / "bert-order"
    squeeze("finetune", base, "-d", data, "-o", model, "--epochs", "10", "--lr", "3e-3",
            "--batch-size", "32", "--max-length", "32", "--overwrite", "--quiet")  # fmt: skip
    out = work / "tuned"
    squeeze("tune", model, "-d", data, "-o", out, "--max-length", "32", "--runs", "10",
            "--amounts", "0.25,0.5,0.75", "--recovery-steps", "20,40", "--layers", "1",
            "--quantize", "dynamic", "--max-accuracy-drop", "2", "--gate-on", "upper",
            "--budget", "10m", "--cache-dir", work / "cache", "--overwrite", "--quiet")  # fmt: skip
    return out / "report" / "index.html"


def screenshot(page: Path, out: Path) -> None:
    """Headless Chromium's screenshot of ``page``, reduced to a 256-colour PNG (a page of text
    and flat plots loses nothing visible, and the file stays small enough to commit)."""
    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("no chromium on PATH (Debian: apt-get install chromium)")
    raw = out.with_suffix(".raw.png")
    # --no-sandbox: Chromium refuses to run as root (CI containers) with its sandbox on.
    subprocess.run([browser, "--headless", "--no-sandbox", "--hide-scrollbars",
                    f"--window-size={WINDOW}", f"--screenshot={raw}", page.resolve().as_uri()],
                   check=True, capture_output=True)  # fmt: skip
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=256).save(out, optimize=True)
    raw.unlink()
    size = out.stat().st_size
    print(f"{out}: {size / 1000:.0f} KB" + (" (over the 300 KB limit)" if size > MAX_BYTES else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/report-screenshot.png"))
    parser.add_argument("--work", type=Path, help="keep the model and report here")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="squeeze-report-"))
    page = build_report(work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    screenshot(page, args.out)
    print(f"report: {page}")


if __name__ == "__main__":
    main()
