"""Screenshots of a report page as a reader sees it, in headless Chromium (Debian's `chromium`).

    python tools/screenshots.py runs/default-quick-<hash>/report.html runs/screenshots

renders the page at 1,400 px width and writes it as pages of 1,400 x 1,400 px
(`page-01.png`, ...), for whoever changes the report to look at: every legend and panel
should be on the page. `make screenshots` runs it on the newest `make demo` report.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH = 1400
TALLEST = 30000  # px rendered; the white below the page is cut off


def shoot(page: Path, out: Path, width: int = WIDTH) -> list[Path]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("screenshots: no chromium on PATH (Debian: apt-get install chromium)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "page.png"
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        command = [browser, *flags, f"--window-size={width},{TALLEST}", f"--screenshot={shot}"]
        subprocess.run([*command, page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
        pixels = np.asarray(Image.open(shot).convert("RGB"))
    inked = np.flatnonzero((pixels < 250).any(axis=(1, 2)))  # rows with anything but white
    pixels = pixels[: inked[-1] + 40] if len(inked) else pixels[:width]
    paths = []
    for number, top in enumerate(range(0, len(pixels), width), start=1):
        path = out / f"page-{number:02d}.png"
        Image.fromarray(pixels[top : top + width]).save(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    written = shoot(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"wrote {len(written)} screenshots to {sys.argv[2]}")
