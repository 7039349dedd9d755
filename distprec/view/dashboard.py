"""The live view of a search: a small state model, updated by events, and ``render``.

The search emits ``on_event(kind, data)`` and knows nothing of this module.
``Dashboard.apply`` folds one event into plain data; ``render(state, now)`` is a pure
function of that data (and of the clock and height it is given), so tests render it
into a recording console with synthetic events, and the live display simply calls it a
few times a second. Rich renderables are built from strings only: nothing returned by
``render`` refers back to the mutable state, which the search thread keeps updating.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from distprec.history import fmt_error, fmt_verdicts, natural_key, worst_error

#: How many recent events the view keeps and shows (fewer when the terminal is short).
EVENTS_KEPT = 50
EVENTS_SHOWN = 6
VERDICT_STYLE = {"pass": "green", "fail": "red", "error": "yellow"}
PHASE_LABEL = {"golden": "golden outputs", "calibration": "INT8 calibration",
               "ray": "Ray", "cluster": "Ray workers"}


@dataclass
class WorkerView:
    """One evaluator actor as the driver sees it."""

    name: str
    node: str = ""
    device: str = ""
    state: str = "idle"  # idle | busy | lost
    size: int | None = None  # layers kept high in the plan being evaluated
    since: float = 0.0  # when the current evaluation was sent (console clock)
    done: int = 0
    busy_s: float = 0.0  # sum of finished evaluations' durations
    last_verdict: str = ""
    last_error: float | None = None


@dataclass
class PhaseView:
    """Golden outputs, calibration, worker start-up: the waits before the search."""

    name: str
    started: float
    total: int | None = None
    done: int = 0
    ended: float | None = None
    note: str = ""


@dataclass
class Dashboard:
    """Everything the live view shows, as plain data."""

    model: str = ""
    precision: str = ""
    strategy: str = ""
    direction: str = ""
    check: str = ""
    started: float = 0.0
    searchable: int | None = None
    device: str = ""
    nodes: int | None = None
    gpus: int | None = None
    workers: dict[str, WorkerView] = field(default_factory=dict)
    workers_since: float | None = None
    phases: dict[str, PhaseView] = field(default_factory=dict)
    evaluations: int = 0
    verdicts: dict[str, int] = field(default_factory=lambda: {"pass": 0, "fail": 0, "error": 0})
    cancelled: int = 0
    depth: int = 0
    best_size: int | None = None
    status: dict = field(default_factory=dict)
    plans_left: int | None = None  # the strategy's plans_left(), as of the last event
    left_bound: bool = False  # True: plans_left is an upper bound; False: an estimate
    searching_since: float | None = None  # the first plan sent (console clock)
    events: deque = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    finished: float | None = None
    stopped: bool = False  # ended by an exception or Ctrl-C, not by the strategy

    @classmethod
    def from_config(cls, cfg, now: float) -> Dashboard:
        return cls(model=str(cfg.model), precision=cfg.precision, strategy=cfg.strategy_name,
                   direction=cfg.direction, check=cfg.check.describe(), started=now)

    # -- folding events ---------------------------------------------------------------
    def apply(self, kind: str, data: dict, now: float, clock: str = "") -> None:
        """Fold one event of the search into the state; ``clock`` stamps the event list."""
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(data, now, clock or time.strftime("%H:%M:%S"))

    def _log(self, clock: str, text: str, style: str = "") -> None:
        self.events.append((clock, text, style))

    def _close_phases(self, now: float, but: str = "") -> None:
        for phase in self.phases.values():
            if phase.ended is None and phase.name != but:
                phase.ended = now
                if phase.total is not None:
                    phase.done = phase.total

    def _on_phase(self, data: dict, now: float, clock: str) -> None:
        name = data.get("name", "")
        if name == "ready":
            self._close_phases(now)
            self.searchable = data.get("searchable", self.searchable)
            return
        self._close_phases(now, but=name)
        phase = self.phases.get(name)
        if phase is None:
            phase = self.phases[name] = PhaseView(name, started=now)
            self._log(clock, f"{PHASE_LABEL.get(name, name)} started")
        phase.total = data.get("total", phase.total)
        phase.done = data.get("done", phase.done)
        if "reused" in data:
            phase.note = "cache reused" if data["reused"] else "computed"
        if phase.total is not None and phase.done >= phase.total and phase.total > 0:
            phase.ended = now

    def _on_workers(self, data: dict, now: float, clock: str) -> None:
        for name, node, device in data.get("workers", []):
            self.workers[name] = WorkerView(name, node, device)
        cluster = data.get("cluster") or {}
        self.nodes = cluster.get("nodes", len({node for _, node, _ in data.get("workers", [])}))
        self.gpus = cluster.get("gpus")
        self.device = data.get("device", self.device)
        self.workers_since = now
        self._close_phases(now)
        self._log(clock, f"{_plural(len(self.workers), 'worker')} ready")

    def _worker(self, name: str) -> WorkerView:
        return self.workers.setdefault(name, WorkerView(name))

    def _on_start(self, data: dict, now: float, clock: str) -> None:
        w = self._worker(data["worker"])
        w.state, w.size, w.since = "busy", data.get("size"), now
        self.depth = max(self.depth, data.get("depth", 0))
        self._progress(data)
        if self.searching_since is None:
            self.searching_since = now

    def _progress(self, data: dict) -> None:
        self.status = dict(data.get("status") or self.status)
        if "plans_left" in data:
            self.plans_left, self.left_bound = data["plans_left"], data.get("left_bound", False)

    def _on_done(self, data: dict, now: float, clock: str) -> None:
        ev = data["evaluation"]
        w = self._worker(data.get("worker", ev.worker))
        verdict = ev.verdict.value
        duration = ev.end - ev.start if ev.end > ev.start else now - w.since
        w.busy_s += max(0.0, duration)
        w.done += 1
        w.last_verdict, w.last_error = verdict, worst_error(ev.figures)
        if w.state != "lost":
            w.state, w.size = "idle", None
        self.evaluations += 1
        self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1
        self.depth = max(self.depth, data.get("depth", 0))
        self._progress(data)
        size = len(ev.keep)
        improved = ev.verdict.passed and (self.best_size is None or size < self.best_size)
        if improved:
            self.best_size = size
        text = f"{w.name} keep {size} -> {verdict}"
        if ev.reason:
            text += f": {ev.reason}"
        elif w.last_error is not None:
            text += f", max|err| {fmt_error(w.last_error)}"
        if improved:
            text += " (new best)"
        self._log(clock, text, VERDICT_STYLE.get(verdict, ""))

    def _on_cancelled(self, data: dict, now: float, clock: str) -> None:
        w = self._worker(data["worker"])
        if w.state != "lost":
            w.state, w.size = "idle", None
        self.cancelled += 1
        self._log(clock, f"{w.name} keep {data.get('size', '?')} cancelled (no longer needed)",
                  "dim")

    def _on_worker_lost(self, data: dict, now: float, clock: str) -> None:
        w = self._worker(data["worker"])
        w.state, w.size = "lost", None
        self._log(clock, f"worker {w.name} lost: {data.get('reason', '')}", "magenta")

    def _on_worker_restarted(self, data: dict, now: float, clock: str) -> None:
        w = self._worker(data["worker"])
        w.state, w.size = "idle", None
        self._log(clock, f"worker {w.name} restarted", "magenta")

    def _on_worker_gone(self, data: dict, now: float, clock: str) -> None:
        self._log(clock, f"worker {data['worker']} gone for good: {data.get('reason', '')}",
                  "magenta")

    def _on_requeued(self, data: dict, now: float, clock: str) -> None:
        self._log(clock, f"keep {data.get('size', '?')} requeued: {data.get('reason', '')}",
                  "dim")

    # -- derived figures ----------------------------------------------------------------
    def busy_share(self, w: WorkerView, now: float) -> float | None:
        """Share of the time since the workers started that ``w`` spent evaluating."""
        if self.workers_since is None:
            return None
        span = (self.finished or now) - self.workers_since
        busy = w.busy_s + (now - w.since if w.state == "busy" else 0.0)
        return min(1.0, busy / span) if span > 0 else None

    @property
    def running(self) -> int:
        return sum(w.state == "busy" for w in self.workers.values())

    def seconds_per_plan(self, now: float) -> float | None:
        """Seconds between verdicts so far: the time since the first plan was sent over the
        plans judged (all workers together, so it already counts their parallelism)."""
        if self.searching_since is None or not self.evaluations:
            return None
        return max(0.0, now - self.searching_since) / self.evaluations

    def left_text(self, now: float) -> str | None:
        """The strategy's plans left and the time they take at the rate so far, in words:
        "~42 plans, ~21 s left (an estimate, at 0.5 s a plan so far)"; None where unknown
        or once finished."""
        if self.plans_left is None or self.finished is not None:
            return None
        n = self.plans_left
        plans = ("at most " if self.left_bound else "~") + _plural(n, "plan")
        each = self.seconds_per_plan(now)
        if each is None:
            return f"{plans} left" + ("" if self.left_bound else " (an estimate)")
        kind = "" if self.left_bound else "an estimate, "
        return f"{plans}, ~{_duration(n * each)} left ({kind}at {each:.2g} s a plan so far)"


#: Step lines the view keeps however short the terminal (the rest fold into one line).
PHASES_SHOWN = 3


# -- rendering ------------------------------------------------------------------------
def render(state: Dashboard, now: float, height: int | None = None) -> RenderableType:
    """The whole view. ``height`` (terminal rows) trims events, then worker rows, to fit."""
    header, search = _header(state, now), _search(state, now)
    search_rows = 2 + len(search.renderable.renderables)  # its lines and borders
    workers = sorted(state.workers.values(), key=lambda w: natural_key(w.name))
    n_phases = len(state.phases)
    if height is not None:  # workers before finished steps: these fold into one line
        spare = height - (4 + search_rows + 3) - 1 - (len(workers) + 1)  # as ``room`` below
        n_phases = min(n_phases, max(PHASES_SHOWN, spare))
    phases = _phases(state, now, n_phases)
    fixed = 4 + search_rows + n_phases + 3  # table head
    n_events = EVENTS_SHOWN
    max_rows = len(workers)
    if height is not None:
        room = height - fixed - 1  # the cursor line under a live display
        n_events = max(0, min(EVENTS_SHOWN, room - len(workers) - 1))
        if n_events < 2:
            n_events = 0
            max_rows = max(1, room - 1) if room - 1 < len(workers) else len(workers)
    parts: list[RenderableType] = [header]
    if workers:
        parts.append(_workers(state, workers, now, max_rows))
    parts.append(search)
    if phases is not None:
        parts.append(phases)
    if n_events and state.events:
        parts.append(_events(state, n_events))
    return Group(*parts)


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def _header(state: Dashboard, now: float) -> Panel:
    mode = ""
    if state.device == "cpu" and state.precision in ("fp16", "bf16"):
        mode = " (emulated on CPU)"
    line1 = Text.assemble((state.precision or "?", "bold"), mode, "  ", state.strategy,
                          f" {state.direction}", "  ", state.check)
    cluster = "cluster: starting"
    if state.workers:
        cluster = (f"cluster: {_plural(state.nodes, 'node')}, {_plural(state.gpus, 'GPU')}, "
                   f"{_plural(len(state.workers), 'worker')}")
    layers = f"  {state.searchable} searchable layers" if state.searchable is not None else ""
    end = state.finished or now
    line2 = Text(f"{cluster}{layers}  {_elapsed(end - state.started)}")
    line1.no_wrap = line2.no_wrap = True
    line1.overflow = line2.overflow = "ellipsis"
    title = Text.assemble(("distprec ", "bold"), state.model)
    return Panel(Group(line1, line2), title=title, title_align="left", box=box.ROUNDED,
                 padding=(0, 1))


def _plural(n: int | None, word: str) -> str:
    if n is None:
        return f"? {word}s"
    return f"{n} {word}" + ("" if n == 1 else "s")


def _workers(state: Dashboard, workers: list[WorkerView], now: float, max_rows: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=True, padding=(0, 1), show_edge=False,
                  pad_edge=False)
    table.add_column("worker", no_wrap=True, max_width=8, overflow="ellipsis")
    table.add_column("node", no_wrap=True, ratio=1, overflow="ellipsis", min_width=6)
    table.add_column("device", no_wrap=True, max_width=8, overflow="ellipsis")
    table.add_column("state", no_wrap=True)
    table.add_column("plan", justify="right", no_wrap=True)
    table.add_column("evals", justify="right", no_wrap=True)
    table.add_column("busy", justify="right", no_wrap=True)
    table.add_column("last verdict", no_wrap=True, min_width=12)
    shown = workers[:max_rows]
    for w in shown:
        share = state.busy_share(w, now)
        state_text = Text(w.state, style={"busy": "bold cyan", "lost": "magenta"}.get(
            w.state, "dim"))
        last = Text("-", style="dim")
        if w.last_verdict:
            last = Text.assemble((w.last_verdict, VERDICT_STYLE.get(w.last_verdict, "")),
                                 f" {fmt_error(w.last_error)}" if w.last_error is not None
                                 else "")
        table.add_row(w.name, w.node or "?", w.device or "?", state_text,
                      str(w.size) if w.size is not None else "-", str(w.done),
                      f"{share:.0%}" if share is not None else "-", last)
    if len(workers) > len(shown):
        hidden = workers[len(shown):]
        busy = sum(w.state == "busy" for w in hidden)
        table.add_row(f"+{len(hidden)}", "more workers", "", f"{busy} busy", "", "", "", "",
                      style="dim")
    return table


def _search(state: Dashboard, now: float) -> Panel:
    line1 = Text(f"round {state.depth}  evaluations {state.evaluations} "
                 f"({fmt_verdicts(state.verdicts)})  running {state.running}"
                 + (f"  cancelled {state.cancelled}" if state.cancelled else ""))
    if state.best_size is None:
        best = Text("best passing plan: none yet", style="dim")
    else:
        of = f" of {state.searchable}" if state.searchable is not None else ""
        best = Text.assemble("best passing plan: ", (f"{state.best_size}{of}", "bold green"),
                             " layers kept in FP32")
    lines = [line1, best]
    status = status_lines(state.status)
    if status:
        lines.append(Text(f"{state.strategy}: {status[0]}"))
        lines += [Text(f"  {more}") for more in status[1:]]
    left = state.left_text(now)
    if left:
        lines.append(Text(f"left: {left}"))
    for line in lines:
        line.no_wrap, line.overflow = True, "ellipsis"
    title = "search" + ((" (stopped)" if state.stopped else " (finished)")
                        if state.finished is not None else "")
    return Panel(Group(*lines), title=title, title_align="left", box=box.ROUNDED,
                 padding=(0, 1))


def status_lines(status: dict) -> list[str]:
    """A strategy's ``status()`` in words, one or more lines."""
    if "level" in status and "kept" in status:
        return _minimize_lines(status)
    text = _status_text(status)
    return [text] if text else []


def _minimize_lines(status: dict) -> list[str]:
    """Minimize's fields (strategies/minimize.py ``status``) in plain words: the level is
    how often the kept set's chunks were halved; each chunk's removal is tried once a
    level; ``ahead`` are tries asked before the verdicts they follow from."""
    stage = f"stage {status['stage']}, " if status.get("stage") else ""
    size, chunks, left = status.get("chunk", 0), status.get("chunks"), status.get("left", 0)
    many = _plural(chunks, "chunk") if chunks is not None else "chunks"
    asked = f"{chunks - left} asked, " if chunks is not None else ""
    return [f"{stage}granularity level {status['level']}",
            f"{many} of {'up to ' if size > 1 else ''}{_plural(size, 'layer')}; "
            f"{_plural(status['kept'], 'layer')} kept so far",
            f"chunk removals: {asked}{left} still to test, {status.get('ahead', 0)} asked "
            "ahead of verdicts"]


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _status_text(status: dict) -> str:
    """A strategy's ``status()`` dict in words; bounds show how many counts remain."""
    parts = []
    for key, value in status.items():
        if key == "bounds" and isinstance(value, (tuple, list)) and len(value) == 2:
            lo, hi = value
            if hi is None:
                parts.append("bounds not known yet")
            else:
                lo_text = "-" if lo is None or lo < 0 else str(lo)
                parts.append(f"fails at {lo_text}, passes at {hi} "
                             f"({max(0, hi - max(lo if lo is not None else -1, -1) - 1)} "
                             f"counts left)")
        elif value is not None:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def _phases(state: Dashboard, now: float, rows: int) -> Table | None:
    """The start-up and search steps in ``rows`` lines at most: running steps and the
    latest finished ones, the earlier ones counted in one line."""
    if not state.phases:
        return None
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(no_wrap=True, min_width=16)
    table.add_column(ratio=1)
    table.add_column(no_wrap=True, justify="right", min_width=14)
    shown = list(state.phases.values())
    if len(shown) > rows:
        running = [p for p in shown if p.ended is None]
        done = [p for p in shown if p.ended is not None]
        keep = done[len(done) - max(0, rows - 1 - len(running)):] if rows > 1 else []
        hidden = len(done) - len(keep)
        shown = [p for p in shown if p.ended is None or p in keep]
        table.add_row(f"+{hidden} earlier steps", ProgressBar(total=1, completed=1), "done")
    for phase in shown:
        end = phase.ended if phase.ended is not None else now
        if phase.total:
            bar = ProgressBar(total=phase.total, completed=phase.done, width=None)
            count = f"{phase.done}/{phase.total}"
        else:
            bar = ProgressBar(total=1, completed=1 if phase.ended is not None else 0)
            count = ""
        label = "done" if phase.ended is not None else "running"
        detail = " ".join(x for x in (count, phase.note or label, _elapsed(end - phase.started))
                          if x)
        table.add_row(PHASE_LABEL.get(phase.name, phase.name), bar, detail)
    return table


def _events(state: Dashboard, n: int) -> Table:
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    for clock, text, style in list(state.events)[-n:]:
        table.add_row(clock, Text(text, style=style))
    return table
