"""What the user sees during and after a search.

The search knows nothing of the console: it emits events (``on_event(kind, data)``) and
this module turns them into lines. Without a terminal (CI logs, redirected output) it
writes plain timestamped lines with no cursor codes.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

SHOW_LAYERS = 24


class SearchConsole:
    def __init__(self, cfg, live: bool = True, console: Console | None = None) -> None:
        self.cfg = cfg
        self.console = console or Console(stderr=False)
        self.live = live and self.console.is_interactive
        self.t0 = time.time()
        self.done = 0

    def __enter__(self) -> SearchConsole:
        c = self.cfg
        self.log(f"search {c.model}: {c.precision}, strategy {c.strategy} ({c.direction}), "
                 f"check {c.check.describe()}")
        return self

    def __exit__(self, *exc) -> None:
        return None

    def log(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.console.print(f"{stamp} {text}", highlight=False, markup=False, soft_wrap=True)

    def on_event(self, kind: str, data: dict) -> None:
        if kind == "phase":
            self.log(f"{data['name']}" + (f" ({data['total']} samples)" if "total" in data
                                            else ""))
        elif kind == "workers":
            self.log(f"{len(data['workers'])} workers: " + ", ".join(
                f"{w} on {node} ({dev})" for w, node, dev in data["workers"]))
        elif kind == "done":
            ev = data["evaluation"]
            self.done += 1
            self.log(f"#{self.done} {ev.worker}: keep {len(ev.keep)} -> {ev.verdict.value}"
                     + (f" ({ev.reason})" if ev.reason else ""))
        elif kind == "worker_lost":
            self.log(f"worker {data['worker']} lost: {data['reason']}")

    def summary(self, result: dict) -> None:
        keep = result["high_precision_layers"]
        table = Table(title="distprec result", show_header=False)
        table.add_row("passed", str(result["passed"]))
        table.add_row("layers kept in FP32", f"{len(keep)} of {result['searchable_layers']}")
        table.add_row("minimal", result["minimal"])
        table.add_row("evaluations / rounds", f"{result['evaluations']} / {result['rounds']}")
        table.add_row("workers", f"{result['workers']} ({result['device']}"
                      + (", FP16/BF16 emulated" if result["emulated"] else "") + ")")
        table.add_row("wall time", f"{result['wall_s']:.1f} s")
        table.add_row("written", ", ".join(result.get("exports", [])))
        for note in result["notes"]:
            table.add_row("note", note)
        self.console.print(table)
        if keep:
            shown = ", ".join(keep[:SHOW_LAYERS])
            more = f", ... ({len(keep) - SHOW_LAYERS} more in the result JSON)" \
                if len(keep) > SHOW_LAYERS else ""
            self.console.print(f"Layers to keep in FP32: {shown}{more}", highlight=False,
                               markup=False, soft_wrap=True)
            if len(keep) <= SHOW_LAYERS:
                self.console.print(f"trtexec: {result['trtexec_command']}", highlight=False,
                                   markup=False, soft_wrap=True)
