"""What the user sees during and after a search.

The search knows nothing of the console: it emits events (``on_event(kind, data)``).
On a terminal they feed a rich live dashboard (distprec.view.dashboard) refreshed four times
a second, with Python logging routed above it. Without a terminal (CI logs, redirected
output) or with ``--no-live`` they become plain timestamped lines at a steady pace, with
no cursor codes: rich's Live would print only its last frame there.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from distprec.history import (
    count,
    fmt_error,
    fmt_verdicts,
    utilisation,
    verdict_counts,
    worst_error,
)
from distprec.plan import plan_id
from distprec.view.dashboard import PHASE_LABEL, Dashboard, render, status_lines
from distprec.view.logroute import live_view

SHOW_LAYERS = 24
REFRESH_PER_SECOND = 4
_IMPORTED = time.monotonic()


def process_age() -> float:
    """Seconds since this process started (Linux: /proc), else since distprec's view was
    imported: the summary's wall time is what the user waited, start-up included."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


class SearchConsole:
    """Live view or plain log for one search, then the summary table.

    ``every_s`` and ``per_eval`` pace the plain log (see PlainLog); ``heartbeat_s`` is how
    often it checks for silence (None: never). ``clock`` is for tests: it replaces
    ``time.monotonic`` so that shares and elapsed times are fixed.
    """

    def __init__(self, cfg, live: bool = True, console: Console | None = None, *,
                 every_s: float = 10.0, per_eval: int = 50, heartbeat_s: float | None = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.console = console or Console()
        self.live = live and self.console.is_interactive
        self.clock = clock
        self.state = Dashboard.from_config(cfg, clock())
        self.heartbeat_s = heartbeat_s
        self._lock = threading.RLock()
        self._stack = ExitStack()
        self._plain = None if self.live else PlainLog(self.log, self.state, every_s, per_eval)

    # -- lifetime -------------------------------------------------------------------------
    def __enter__(self) -> SearchConsole:
        if self.live:
            self._stack.enter_context(live_view(self.console, self.frame, REFRESH_PER_SECOND))
        else:
            c = self.cfg
            self.log(f"search {c.model}: {c.precision}, strategy {c.strategy_name} "
                     f"({c.direction}), check {c.check.describe()}")
            if self.heartbeat_s:
                self._stack.enter_context(_Heartbeat(self._tick, self.heartbeat_s))
        return self

    def __exit__(self, exc_type, *exc) -> None:
        with self._lock:
            self.state.finished = self.clock()
            self.state.stopped = exc_type is not None
        self._stack.close()  # the live view draws its last frame, logging is restored

    # -- events ---------------------------------------------------------------------------
    def on_event(self, kind: str, data: dict) -> None:
        now = self.clock()
        with self._lock:
            self.state.apply(kind, data, now)
            if self._plain is not None:
                self._plain.on_event(kind, data, now)

    def frame(self):
        """The current view (called by Live from its refresh thread)."""
        with self._lock:
            return render(self.state, self.clock(), self.console.size.height)

    def _tick(self) -> None:
        with self._lock:
            if self._plain is not None:
                self._plain.tick(self.clock())

    def log(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.console.print(f"{stamp} {text}", highlight=False, markup=False, soft_wrap=True)

    # -- after the search -----------------------------------------------------------------
    def summary(self, result: dict) -> None:
        self.console.print(summary_table(result, process_age()))
        if result.get("latency", {}).get("front"):
            self.console.print(front_table(result["latency"]))
        keep = result["high_precision_layers"]
        if result.get("passed") and not keep:  # nothing stays FP32: deploy the all-low model
            tool = "trtexec" if result.get("trtexec_command") else "polygraphy"
            if result.get(f"{tool}_command"):
                self.console.print(f"Nothing needs FP32: every layer runs in "
                                   f"{result.get('precision', 'low precision')}. {tool}: "
                                   f"{result[f'{tool}_command']}", highlight=False,
                                   markup=False, soft_wrap=True)
        if keep:
            shown = ", ".join(keep[:SHOW_LAYERS])
            more = f", ... ({len(keep) - SHOW_LAYERS} more in the result JSON)" \
                if len(keep) > SHOW_LAYERS else ""
            self.console.print(f"Layers to keep in FP32: {shown}{more}", highlight=False,
                               markup=False, soft_wrap=True)
            if len(keep) <= SHOW_LAYERS:
                tool = "trtexec" if result.get("trtexec_command") else "polygraphy"
                self.console.print(f"{tool}: {result[f'{tool}_command']}", highlight=False,
                                   markup=False, soft_wrap=True)


def _minimality(done: int, needed: int, screened: int) -> str:
    """Where the single removals of a 1-minimal answer were judged, when not all as
    candidates (confirm.py)."""
    if done >= needed:
        return ""
    if screened:
        return (f"; of {needed} single removals, {screened} judged on the answer's own "
                f"switchboard, {done} as candidates")
    return (f"; minimality confirmed on {done} of {needed} single removals (the rest on the "
            "switchboard)")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def front_table(latency: dict) -> Table:
    """The accuracy-latency front (--objective latency), fastest first, with FP32 and the
    all-low model as references; K is what ``distprec check --front-point K`` takes."""
    table = Table(title=f"accuracy-latency front on {latency['device']} (FP32 "
                  f"{_ms(latency['fp32']['median_s'])})", box=box.SIMPLE, title_justify="left")
    for name in ("K", "plan", "FP32 layers", "latency", "spread", "casts", "rel. L2 error"):
        table.add_column(name, justify="right" if name != "plan" else "left")
    answer = (latency.get("answer") or {}).get("plan")
    for k, p in enumerate(latency["front"]):
        table.add_row(str(k), p["plan"] + (" (answer)" if p["plan"] == answer else ""),
                      str(p["layers"]), _ms(p["latency_s"]), f"{p['spread']:.1%}",
                      str(p["casts"]), f"{p['error']:.3g}")
    low = latency.get("all_low")
    if low and "median_s" in low:
        table.add_row("-", "all-low" + ("" if low["passed"] else " (fails)"), "0",
                      _ms(low["median_s"]), f"{low['spread']:.1%}", str(low["casts"]), "")
    table.add_row("-", "FP32", "all", _ms(latency["fp32"]["median_s"]),
                  f"{latency['fp32']['spread']:.1%}", str(latency["fp32"]["casts"]), "0")
    return table


def summary_table(result: dict, total_s: float | None = None) -> Table:
    """The end-of-search table: what was found, at what cost, and what was written.

    ``total_s``: seconds since the process started, the time the user waited."""
    keep = result["high_precision_layers"]
    history = result.get("history") or []
    share = utilisation(result)
    table = Table(title="distprec result", show_header=False, box=box.ROUNDED,
                  title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    found = (f"{len(keep)} of {result['searchable_layers']} kept in FP32"
             if result["passed"] else "no passing plan")
    table.add_row("found layers", f"{found} ({result['minimal']})" if result["passed"]
                  else found)
    extra = [f"{result.get('cancelled', 0)} cancelled"] if result.get("cancelled") else []
    table.add_row("evaluations", f"{result['evaluations']} "
                  f"({fmt_verdicts(verdict_counts(history))})"
                  + "".join(f", {x}" for x in extra))
    table.add_row("rounds", str(result["rounds"]))
    latency = result.get("latency")
    if latency and latency.get("answer"):
        best, fp32 = latency["answer"], latency["fp32"]["median_s"]
        table.add_row("latency", f"{_ms(best['latency_s'])} on {latency['device']} "
                      f"({fp32 / best['latency_s']:.2f}x FP32's {_ms(fp32)}); the fewest-layers "
                      f"answer keeps {len(result.get('fewest_layers', []))}; {latency['timed']} "
                      f"plans timed in {latency['timing_s']:.1f} s"
                      + (f"; the answer timed again last: {again['difference']:.1%} apart"
                         if (again := latency.get("retimed")) else ""))
    how = result.get("evaluation") or {}
    if how.get("mode") in ("switchboard", "auto"):
        wrong, edges = len(how["disagreements"]), how.get("edge_verdicts", 0)
        done, needed = how.get("removals_confirmed", (0, 0))
        table.add_row("verdicts", f"{how['switchboard_verdicts']} switchboard, "
                      f"{how['candidate_verdicts']} real candidates (confirming, "
                      f"{how['confirm_s']:.1f} s); {count(wrong, 'disagreement')}"
                      + (f", {edges} of them edge verdicts (within kernel noise)" if edges
                         else "")
                      + ("" if how["confirmed"] else "; answer NOT confirmed")
                      + _minimality(done, needed, how.get("removals_screened", (0, 0))[0]))
    search_s, answer_s = result.get("search_s"), how.get("answer_confirmed_s")
    times = [f"search {search_s:.1f} s"] if isinstance(search_s, (int, float)) else []
    times += [f"answer confirmed at {answer_s:.1f} s"] if answer_s is not None else []
    if total_s is not None and total_s >= result["wall_s"]:
        table.add_row("wall time", f"{total_s:.1f} s since distprec started; on Ray "
                      f"{result['wall_s']:.1f} s" + (f" ({', '.join(times)})" if times else ""))
    else:
        table.add_row("wall time", f"{result['wall_s']:.1f} s"
                      + (f" ({', '.join(times)})" if times else ""))
    table.add_row("workers", f"{result['workers']} ({result['device']}"
                  + (", FP16/BF16 emulated" if result.get("emulated") else "") + ")")
    table.add_row("worker utilisation", f"{share:.0%}" if share is not None else "-")
    table.add_row("exports written", "\n".join(result.get("exports", [])) or "-")
    artifact = result.get("artifact_check")
    if artifact:  # the saved file through the check (distprec/artifact.py)
        table.add_row("saved file", artifact["summary"])
    for note in [*result.get("notes", []), *result.get("export_notes", [])]:
        table.add_row("note", note)
    return table


class PlainLog:
    """Timestamped lines for logs: every evaluation at first, then a steady progress line.

    Large searches on many workers finish hundreds of evaluations a minute; a line for
    each would bury the few that matter. After ``per_eval`` evaluations only better plans,
    errors and lost workers get their own line, and a progress line is written at most
    every ``every_s`` seconds. ``tick`` (a heartbeat thread) also writes one after
    ``every_s`` seconds of silence, so a slow build does not look like a hang.
    """

    def __init__(self, write: Callable[[str], None], state: Dashboard, every_s: float = 10.0,
                 per_eval: int = 50) -> None:
        self.write, self.state = write, state
        self.every_s, self.per_eval = every_s, per_eval
        self.last_line = self.last_progress = 0.0
        self.best: int | None = None

    def _say(self, text: str, now: float) -> None:
        self.write(text)
        self.last_line = now

    def _progress(self, now: float) -> None:
        self._say(self.progress(now), now)
        self.last_progress = now

    def on_event(self, kind: str, data: dict, now: float) -> None:
        s = self.state
        if kind == "phase":
            self._phase(data, now)
        elif kind == "workers":
            cluster = data.get("cluster") or {}
            self._say(f"{len(data['workers'])} workers ({cluster.get('nodes', '?')} node(s), "
                      f"{cluster.get('gpus', '?')} GPU(s)): " + ", ".join(
                          f"{w} on {node} ({dev})" for w, node, dev in data["workers"]), now)
        elif kind == "done":
            ev = data["evaluation"]
            better = ev.verdict.passed and (self.best is None or len(ev.keep) < self.best)
            if better:
                self.best = len(ev.keep)
            notable = better or ev.verdict.value == "error"
            if s.evaluations <= self.per_eval or notable:
                err = worst_error(ev.figures)
                self._say(f"#{s.evaluations} {ev.worker}: keep {len(ev.keep)} "
                          f"(plan {plan_id(ev.keep)}) -> "
                          f"{ev.verdict.value}"
                          + (f" ({ev.reason})" if ev.reason else
                             f" (max|err| {fmt_error(err)})" if err is not None else ""), now)
                if s.evaluations == self.per_eval:
                    self._say(f"(from here on: new best plans, errors and lost workers, and "
                              f"a progress line at most every {self.every_s:g} s)", now)
            elif now - self.last_progress >= self.every_s:
                self._progress(now)
        elif kind == "cancelled" and s.cancelled <= self.per_eval:
            self._say(f"{data['worker']}: keep {data.get('size', '?')} cancelled "
                      "(no longer needed)", now)
        elif kind in ("worker_lost", "worker_gone"):
            self._say(f"worker {data['worker']} {kind[7:]}: {data['reason']}", now)
        elif kind == "worker_restarted":
            self._say(f"worker {data['worker']} restarted", now)
        elif kind == "requeued":
            self._say(f"keep {data.get('size', '?')} requeued ({data['reason']})", now)

    def _phase(self, data: dict, now: float) -> None:
        name = data.get("name", "")
        if name == "ready":
            layers = data.get("searchable")
            self._say("ready" + (f": {layers} searchable layers" if layers else ""), now)
            return
        label = PHASE_LABEL.get(name, name)
        total, done = data.get("total"), data.get("done", 0)
        if name == "ray":
            where = data.get("address", "local")
            self._say("Ray: starting a local instance" if where == "local" else
                      f"Ray: joining {where}", now)
        elif name == "cluster":
            up = f" (Ray up in {data['ray_s']:.1f} s)" if "ray_s" in data else ""
            self._say(f"{label}: starting on {data.get('address', 'local')} Ray{up}", now)
        elif data.get("source") and total is not None:  # read from a file, and checked
            source = data["source"]
            source = ", ".join(map(str, source)) if isinstance(source, list) else source
            self._say(f"{label}: {count(total, 'sample')} from {source}", now)
        elif not done:
            self._say(f"{label}: {count(total, 'sample')}" if total is not None else label, now)
        elif total is not None and done >= total and (
                "reused" in data or now - self.last_line >= self.every_s):
            note = {True: ", cache reused", False: ", computed"}.get(data.get("reused"), "")
            self._say(f"{label}: {done}/{total} done{note}", now)

    def tick(self, now: float) -> None:
        """Heartbeat: a progress line when the search runs and nothing was said lately."""
        s = self.state
        if s.workers_since is None or s.finished is not None:
            return
        if now - self.last_line >= self.every_s:
            self._progress(now)

    def progress(self, now: float | None = None) -> str:
        """The progress line: counts, then the strategy's status in words and, where it can
        tell, the plans and time left (``now``: the console clock, for the rate)."""
        s = self.state
        best = f"{s.best_size} layers" if s.best_size is not None else "none yet"
        line = (f"progress: {s.evaluations} evaluations ({fmt_verdicts(s.verdicts)}), "
                f"{s.running} running, "
                f"round {s.depth}, best passing plan {best}")
        status = status_lines(s.status)
        if status:
            line += f"; {s.strategy}: " + ", ".join(status)
        left = s.left_text(now) if now is not None else None
        return line + (f"; left: {left}" if left else "")


class _Heartbeat:
    """Calls ``tick`` about once a second on a daemon thread while the context is open."""

    def __init__(self, tick: Callable[[], None], every_s: float) -> None:
        self.tick, self.period = tick, min(1.0, every_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="distprec-heartbeat",
                                        daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.tick()

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
