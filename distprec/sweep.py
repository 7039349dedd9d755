"""One search per (device kind, precision) pair, all at once on one Ray cluster.

Each search keeps its own strategy and its own evaluator actors, placed on nodes of its
kind (distprec.routing); one Python thread drives each (the driver loop blocks only in
``ray.wait``, which releases the GIL). Searches of one kind share that kind's slots: when a
kind has fewer slots than searches, its searches form fewer *lanes* that run one after
another. Every lane starts its first evaluators before any search begins, so a kind that
cannot be placed fails the sweep before work is spent on the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import ray

from distprec import __version__
from distprec.actors.loop import EventSink
from distprec.actors.pool import Worker, stop_workers
from distprec.devices import PROFILES, profile
from distprec.errors import InputError, first_line
from distprec.plan import PRECISIONS
from distprec.result import build_result
from distprec.routing import connect_as_host, node_kinds, require, start_on_kind
from distprec.search import Prepared, SearchConfig, prepare, resolve_device, run_search

Log = Callable[[str], None]


@dataclass(frozen=True)
class Pair:
    device: str  # the device kind (nano, tx2...), not the backend
    precision: str

    @property
    def label(self) -> str:
        return f"{self.device}/{self.precision}"


@dataclass
class Run:
    """What became of one pair: done, skipped (unsupported) or error."""

    pair: Pair
    status: str = "pending"
    reason: str = ""
    workers: int = 0
    started: float = 0.0  # time.time() when its evaluators were asked for
    ended: float = 0.0
    result: dict | None = None
    on: str = ""  # what evaluated it: "board (trt-8.2.1)", "ray node" or "cpu stand-in"

    def record(self) -> dict:
        res = self.result or {}
        keep = res.get("high_precision_layers")
        return {"device": self.pair.device, "precision": self.pair.precision,
                "status": self.status, "reason": self.reason, "passed": res.get("passed"),
                "high_precision_layers": keep, "count": None if keep is None else len(keep),
                "evaluations": res.get("evaluations"), "workers": self.workers,
                "wall_s": self.ended - self.started if self.ended else None,
                "started": self.started or None, "ended": self.ended or None,
                "evaluated_on": self.on, "faults": res.get("faults"), "result": self.result}


@dataclass
class Lane:
    """Searches of one kind that run one after another, each on ``workers`` actors."""

    kind: str
    pairs: list[Pair] = field(default_factory=list)
    workers: int = 1
    labelled: bool = True
    boards: list = field(default_factory=list)  # inventory boards: SSH proxies, not actors


def split_pairs(devices: list[str], precisions: list[str]) -> tuple[list[Pair], list[Run]]:
    """The pairs to run, and the unsupported ones as skipped runs with their reason."""
    for kind in devices:
        profile(kind)
    for p in precisions:
        if p not in PRECISIONS:
            raise InputError(f"unknown precision {p!r} (choose from {', '.join(PRECISIONS)})")
    todo, skipped = [], []
    for kind in dict.fromkeys(devices):
        for p in dict.fromkeys(precisions):
            why = PROFILES[kind].why_not(p)
            pair = Pair(kind, p)
            if why:
                skipped.append(Run(pair, "skipped", why))
            else:
                todo.append(pair)
    if not todo:
        raise InputError("nothing to run: every (device, precision) pair is unsupported")
    return todo, skipped


def plan_lanes(todo: list[Pair], have: dict[str, tuple[int, bool]],
               per_device: int | None) -> list[Lane]:
    """Spread each kind's slots over its searches (at least one actor per search)."""
    lanes: list[Lane] = []
    for kind in dict.fromkeys(p.device for p in todo):
        pairs = [p for p in todo if p.device == kind]
        slots, labelled = have[kind]
        budget = per_device or slots
        if budget > slots:
            raise InputError(f"--workers-per-device {budget} is more than the {slots} "
                             f"evaluator slot(s) that nodes of kind {kind!r} offer")
        n = min(len(pairs), budget)
        mine = [Lane(kind, [], budget // n, labelled) for _ in range(n)]
        for i, pair in enumerate(pairs):
            mine[i % n].pairs.append(pair)
        lanes += mine
    return lanes


def stand_in_note(backend: str, kinds: list[str]) -> str | None:
    if backend != "cpu" or set(kinds) <= {"cpu"}:
        return None
    return ("the CPU backend stands in on every node: device kinds route the evaluators, "
            "but FP16/BF16 are emulated and INT8 runs on ONNX Runtime's CPU provider, not on "
            "the devices' TensorRT")


def run_sweep(base: SearchConfig, devices: list[str], precisions: list[str],
              per_device: int | None = None, wait: float = 60.0,
              log: Log = print, events: Callable[[str], EventSink] | None = None,
              boards: list | None = None) -> dict:
    """Run every supported pair concurrently; the sweep.json document.

    ``base`` gives model, data, check and strategy; its precision and workers are set per
    pair. Raises InputError (nothing run) when a kind has no node or its evaluators cannot
    start within ``wait`` seconds. ``events(label)``, when given, receives each search's
    events plus ("pair", {"status": ...}) changes (the live view); otherwise every
    evaluation is logged. ``boards`` (distprec/boards/inventory.py): a kind with boards runs
    on them over SSH, one proxy per board, and needs no Ray node of that kind.
    """
    t0 = time.time()
    if per_device is not None and per_device < 1:
        raise InputError(f"--workers-per-device must be at least 1, got {per_device}")
    if not wait > 0:
        raise InputError(f"--wait must be a positive number of seconds, got {wait}")
    todo, skipped = split_pairs(devices, precisions)
    prepared = {}  # before Ray starts: a bad input never starts it (issue 13)
    for p in dict.fromkeys(pair.precision for pair in todo):
        prepared[p] = prepare(replace(base, precision=p))
    connect_as_host(base.address, wait)
    backend = resolve_device(base.device)
    on_boards = {}
    for b in boards or ():
        on_boards.setdefault(b.kind, []).append(b)
    have = {kind: (len(on_boards[kind]), False) if kind in on_boards else require(kind, backend)
            for kind in dict.fromkeys(p.device for p in todo)}
    lanes = plan_lanes(todo, have, per_device)
    for kind, mine in on_boards.items():  # each lane of a board kind drives its own boards
        kind_lanes = [lane for lane in lanes if lane.kind == kind]
        for i, lane in enumerate(kind_lanes):
            lane.boards = mine[i::len(kind_lanes)]
            lane.workers = len(lane.boards)
    note = stand_in_note(backend, [p.device for p in todo if p.device not in on_boards])
    for run in skipped:
        log(f"[{run.pair.label}] skipped: {run.reason}")
        if events:
            events(run.pair.label)("pair", {"status": "skipped"})
    if note:
        log(f"note: {note}")
    for p, prep in prepared.items():
        log(f"prepared {p}: {len(prep.searchable)} searchable layers")
    runs = {pair: Run(pair) for pair in todo}
    driver = _Driver(base, backend, prepared, runs, wait, log, len(lanes), events)
    threads = [threading.Thread(target=driver.lane, args=(lane,), daemon=True,
                                name=f"distprec-{lane.kind}") for lane in lanes]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():  # short joins keep Ctrl-C working
            t.join(0.5)
    if driver.startup_errors:
        raise InputError(driver.startup_errors[0])
    every = {**runs, **{run.pair: run for run in skipped}}
    ordered = [every[Pair(k, p)] for k in dict.fromkeys(devices) for p in dict.fromkeys(precisions)]
    return {"model": str(base.model), "devices": list(dict.fromkeys(devices)),
            "precisions": list(dict.fromkeys(precisions)), "strategy": base.strategy,
            "direction": base.direction, "backend": backend, "stand_in": note,
            "check": base.check.describe(), "nodes": node_kinds(), "wall_s": time.time() - t0,
            "environment": {"distprec": __version__, "ray": ray.__version__},
            "runs": [r.record() for r in ordered]}


class _Driver:
    """The per-lane thread body and what the lanes share (barrier, log lock, outcomes)."""

    def __init__(self, base: SearchConfig, backend: str, prepared: dict[str, Prepared],
                 runs: dict[Pair, Run], wait: float, log: Log, lanes: int,
                 events: Callable[[str], EventSink] | None = None) -> None:
        self.base, self.backend, self.prepared, self.runs = base, backend, prepared, runs
        self.wait, self._log, self.events = wait, log, events
        self.lock = threading.Lock()
        self.setups: dict[str, ray.ObjectRef] = {}  # precision -> Setup, put once for all kinds
        self.barrier = threading.Barrier(lanes)
        self.startup_errors: list[str] = []

    def log(self, text: str) -> None:
        with self.lock:
            self._log(text)

    def lane(self, lane: Lane) -> None:
        for i, pair in enumerate(lane.pairs):
            if not self.search(pair, lane, first=i == 0):
                for rest in lane.pairs[i + 1:]:
                    self.runs[rest].status, self.runs[rest].reason = "error", "not started"
                return

    def search(self, pair: Pair, lane: Lane, first: bool) -> bool:
        """Run one pair; False when the lane must stop (its start-up failed)."""
        run = self.runs[pair]
        run.started, run.workers = time.time(), lane.workers
        cfg = replace(self.base, precision=pair.precision, workers=lane.workers,
                      device=self.backend)
        workers: list[Worker] = []
        waiting = first
        try:
            prep = self.prepared[pair.precision]
            with self.lock:
                if pair.precision not in self.setups:
                    self.setups[pair.precision] = ray.put(prep.setup(cfg))
            if lane.boards:
                from distprec.boards.actor import runtime_label, start_proxies

                workers = start_proxies(self.setups[pair.precision], lane.boards,
                                        max_restarts=cfg.max_restarts, timeout=self.wait,
                                        prefix=f"{pair.label}/")
                run.on = f"board ({', '.join(sorted({runtime_label(w) for w in workers}))})"
            else:
                workers = start_on_kind(self.setups[pair.precision], self.backend,
                                        pair.device, lane.workers, self.wait,
                                        prefix=f"{pair.label}/w", labelled=lane.labelled,
                                        max_restarts=cfg.max_restarts)
                run.on = "cpu stand-in" if self.backend == "cpu" and pair.device != "cpu" \
                    else "ray node"
            if first:
                self.barrier.wait(timeout=2 * self.wait + 30)
                waiting = False
            self.log(f"[{pair.label}] started: {len(workers)} evaluator(s) on node(s) "
                     + ", ".join(sorted({w.node_id[:8] for w in workers})))
            self._status(pair, "running")
            report = run_search(cfg, self._sink(pair), prepared=prep, workers=workers)
            run.result = build_result(cfg, report)
            run.status = "done"
            res = run.result
            self._status(pair, "done" if res["passed"] else "no plan")
            self.log(f"[{pair.label}] done: {'passed' if res['passed'] else 'NO PASSING PLAN'}"
                     f", {len(res['high_precision_layers'])} layer(s) kept in FP32, "
                     f"{res['evaluations']} evaluations")
            return True
        except threading.BrokenBarrierError:
            run.status, run.reason = "error", "not started: another search could not start"
            return False
        except Exception as exc:  # one search failing must not take the others down
            run.status = "error"
            run.reason = first_line(exc)
            if waiting:  # start-up failed: nothing of the sweep may run
                with self.lock:
                    self.startup_errors.append(f"{pair.label}: {run.reason}")
                self.barrier.abort()
                return False
            self.log(f"[{pair.label}] error: {run.reason}")
            self._status(pair, "error")
            return True
        finally:
            run.ended = time.time()
            stop_workers(workers)

    def _status(self, pair: Pair, status: str) -> None:
        if self.events:
            self.events(pair.label)("pair", {"status": status})

    def _sink(self, pair: Pair):
        if self.events:
            return self.events(pair.label)

        def on_event(kind: str, data: dict) -> None:
            if kind == "done":
                ev = data["evaluation"]
                self.log(f"[{pair.label}] {ev.worker}: keep {len(ev.keep)} -> "
                         f"{ev.verdict.value}" + (f" ({ev.reason})" if ev.reason else ""))
            elif kind == "worker_lost":
                self.log(f"[{pair.label}] worker {data['worker']} lost: {data['reason']}")
        return on_event


def table(doc: dict, width: int = 60):
    """The side-by-side table of a sweep document (a rich Table).

    Name lists are cut to ``width`` characters (sweep.json has them whole); a skipped or
    failed pair shows its reason instead. Lost workers and plans run again are said under
    it.
    """
    from rich.table import Column, Table

    faults = [f"{run['device']}/{run['precision']}: {text}" for run in doc["runs"]
              if (text := fault_text(run.get("faults")))]
    t = Table("device", "precision", "on", "status", "count", "evals", "wall s",
              Column("layers kept in FP32, or why not run", overflow="fold", ratio=1),
              title=f"distprec sweep: {doc['model']}"
              + (" (CPU backend standing in)" if doc.get("stand_in") else ""), expand=True,
              caption="recovered faults (no verdict came from a lost worker): "
              + "; ".join(faults) if faults else None, caption_justify="left")
    for run in doc["runs"]:
        keep = run["high_precision_layers"]
        if run["status"] == "done":
            status = "passed" if run["passed"] else "no plan"
            status += latency_text((run.get("result") or {}).get("latency"))
            names = ", ".join(keep) or "(none)"
            text = names if len(names) <= width else names[:width - 3] + "..."
        else:
            status, text = run["status"], run["reason"]
        t.add_row(run["device"], run["precision"], run.get("evaluated_on", ""), status,
                  "" if keep is None else str(len(keep)),
                  "" if run["evaluations"] is None else str(run["evaluations"]),
                  "" if run["wall_s"] is None else f"{run['wall_s']:.1f}", text)
    return t


def latency_text(latency: dict | None) -> str:
    """Under the status, a device kind's fastest passing plan (--objective latency) against
    its own FP32: "\n1.2 ms\n0.52x FP32" (no column of its own: 80 columns hold no more)."""
    best = (latency or {}).get("answer")
    if not best:
        return ""
    ratio = best["latency_s"] / latency["fp32"]["median_s"]
    return f"\n{best['latency_s'] * 1e3:.3g} ms\n{ratio:.2f}x FP32"


def fault_text(faults: dict | None) -> str:
    """What went wrong under a search and was recovered: "1 worker lost, 1 plan rerun"."""
    if not faults:
        return ""
    lost, rerun = len(faults["lost_workers"]), faults["requeued"]
    parts = [f"{lost} worker{'s' * (lost != 1)} lost"] if lost else []
    parts += [f"{rerun} plan{'s' * (rerun != 1)} rerun"] if rerun else []
    parts += [f"{len(faults['gone'])} not back"] if faults["gone"] else []
    parts += [f"{faults['timeouts']} timed out"] if faults["timeouts"] else []
    return ", ".join(parts)
