"""Remake docs/live.png and docs/report.png from a real ``distprec demo`` run.

    python docs/make_screenshots.py            (needs tmux, chromium, matplotlib)

live.png: the demo runs in a tmux pane (a real terminal); the pane is captured with its
colours (``capture-pane -e``) several times a second, a frame from the middle of the
search is kept, turned into SVG by rich (``Text.from_ansi`` + ``save_svg``) and
rasterised by headless Chromium. report.png: ``distprec report`` on that run's
result.json, screenshotted by headless Chromium. Nothing is drawn by hand.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

DOCS = Path(__file__).resolve().parent
COLS, ROWS = 90, 34
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--hide-scrollbars", "--force-device-scale-factor=1"]


def capture_live(work: Path) -> tuple[list[str], Path]:
    """Run the demo in tmux; return the coloured frames seen and the demo's folder."""
    sock, out = work / "tmux.sock", work / "demo"
    tmux = ["tmux", "-S", str(sock), "-f", "/dev/null"]
    cmd = (f"env COLUMNS={COLS} {sys.executable} -m distprec.cli demo --workers 2 "
           f"--strategy linear --out {out}; echo __EXIT__ $?; sleep 600")
    subprocess.run([*tmux, "new-session", "-d", "-x", str(COLS), "-y", str(ROWS), "-s", "d",
                    cmd], check=True)
    frames: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            pane = subprocess.run([*tmux, "capture-pane", "-e", "-p", "-t", "d"],
                                  capture_output=True, text=True).stdout
            frames.append(pane)
            if "__EXIT__" in pane:
                break
            time.sleep(0.1)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    return frames, out


def pick_frame(frames: list[str]) -> str:
    """A frame from the middle of the search: both workers busy, the most evaluations
    that still leave it unfinished; cut to the dashboard itself."""
    def evaluations(frame: str) -> int:
        m = re.search(r"evaluations (\d+)", ANSI.sub("", frame))
        return int(m.group(1)) if m else -1

    busy = [f for f in frames if "running 2" in ANSI.sub("", f)
            and "(finished)" not in ANSI.sub("", f)]
    if not busy:
        raise SystemExit("no frame caught the search running; run again")
    frame = sorted(busy, key=evaluations)[len(busy) * 2 // 3]
    lines = frame.splitlines()
    plain = [ANSI.sub("", x) for x in lines]
    start = next(i for i, x in enumerate(plain) if x.startswith("╭─ distprec"))
    end = max(i for i, x in enumerate(plain) if x.strip()) + 1
    return "\n".join(lines[start:end])


def chromium(url: str, png: Path, width: int, height: int, profile: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("chromium is needed (apt-get install chromium)")
    subprocess.run([exe, *CHROMIUM, f"--user-data-dir={profile}",
                    f"--window-size={width},{height}", f"--screenshot={png}", url],
                   check=True, capture_output=True)


def ansi_to_png(frame: str, png: Path, work: Path) -> None:
    console = Console(record=True, width=COLS + 2, file=io.StringIO(),
                      color_system="truecolor", force_terminal=True)
    console.print(Text.from_ansi(frame), soft_wrap=True)
    svg = console.export_svg(title="distprec demo --workers 2 --strategy linear")
    svg = re.sub(r"@font-face\s*\{[^}]*\}", "", svg)  # no web fonts: the local monospace
    svg = svg.replace("Fira Code", "DejaVu Sans Mono")
    width, height = (float(v) for v in re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"',
                                                  svg).groups())
    (work / "live.svg").write_text(svg)
    page = work / "live.html"
    page.write_text(f"<html><body style='margin:0;background:#fff'><img src='live.svg' "
                    f"width={int(width)} height={int(height)}></body></html>")
    chromium(page.as_uri(), png, int(width), int(height), work / "profile")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames, demo = capture_live(work)
        ansi_to_png(pick_frame(frames), DOCS / "live.png", work)
        report = work / "report.html"
        subprocess.run([sys.executable, "-m", "distprec.cli", "report",
                        str(demo / "result.json"), "-o", str(report)], check=True)
        chromium(report.as_uri(), DOCS / "report.png", 1100, 1180, work / "profile")
    print(f"wrote {DOCS / 'live.png'} and {DOCS / 'report.png'}")


if __name__ == "__main__":
    main()
