"""The live view of a sweep: one row per (device, precision) search, all updating at once.

Each search's events fold into its own ``Dashboard`` (the single-search view's state
model), so the figures mean the same in both views; ``render`` is a pure function of
those states. Without a terminal the sweep keeps its plain, prefixed log lines.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Column, Table
from rich.text import Text

from distprec.view.dashboard import Dashboard
from distprec.view.logroute import live_view

STATE_STYLE = {"waiting": "dim", "running": "cyan", "done": "green", "no plan": "red",
               "error": "yellow", "skipped": "dim"}


class SweepView:
    def __init__(self, labels: list[str], console: Console, live: bool = True,
                 title: str = "distprec sweep") -> None:
        self.console = console
        self.live = live and console.is_interactive
        self.title = title
        self.rows: dict[str, Dashboard] = {label: Dashboard(started=time.monotonic())
                                           for label in labels}
        self.state: dict[str, str] = {label: "waiting" for label in labels}
        self.lines: list[str] = []  # the last log lines, shown under the table
        self._lock = threading.Lock()
        self._stack = ExitStack()

    def __enter__(self) -> SweepView:
        if self.live:
            self._stack.enter_context(live_view(self.console, self.frame, 4))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def log(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        if self.live:
            with self._lock:
                self.lines = (self.lines + [line])[-6:]
        else:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def sink(self, label: str):
        """The ``on_event`` of one search, plus the sweep's own "pair" status events."""
        def on_event(kind: str, data: dict) -> None:
            with self._lock:
                if kind == "pair":
                    self.state[label] = data["status"]
                    row = self.rows[label]
                    if data["status"] not in ("waiting", "running") and row.finished is None:
                        row.finished = time.monotonic()
                else:
                    self.rows[label].apply(kind, data, time.monotonic())
        return on_event

    def frame(self) -> RenderableType:
        with self._lock:
            return render(self.title, self.rows, self.state, self.lines, time.monotonic())


def render(title: str, rows: dict[str, Dashboard], state: dict[str, str],
           lines: list[str], now: float) -> RenderableType:
    table = Table(Column("search", no_wrap=True), "state", "workers", "evals", "pass/fail",
                  "round", "best kept", "time", title=title, title_justify="left",
                  box=box.SIMPLE_HEAD)
    for label, d in rows.items():
        table.add_row(
            label, Text(state[label], style=STATE_STYLE.get(state[label], "")),
            f"{d.running}/{len(d.workers)}" if d.workers else "",
            str(d.evaluations) if d.evaluations else "",
            f"{d.verdicts['pass']}/{d.verdicts['fail'] + d.verdicts['error']}"
            if d.evaluations else "",
            str(d.depth) if d.depth else "",
            "" if d.best_size is None else str(d.best_size),
            f"{(d.finished or now) - d.started:.0f}s" if state[label] != "skipped" else "")
    return Group(table, *(Text(line, style="dim") for line in lines))
