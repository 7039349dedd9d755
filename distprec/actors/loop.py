"""The driver loop: ask the strategy, keep every worker busy, tell verdicts back.

A ``ray.wait`` loop rather than ``ray.util.ActorPool``: it controls retries, cancellation
and progress, and ActorPool never resubmits work of a dead actor.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import ray

from distprec.actors.pool import Worker
from distprec.errors import SearchError, cause
from distprec.evaluator import Evaluation
from distprec.strategies.base import Keep, Strategy

EventSink = Callable[[str, dict], None]


@dataclass
class LoopResult:
    evaluations: list[Evaluation] = field(default_factory=list)  # in completion order
    depth: dict[Keep, int] = field(default_factory=dict)
    rounds: int = 0  # longest chain of evaluations that depended on one another
    cancelled: int = 0
    driver_s: float = 0.0  # time the loop itself spent (not waiting for workers)
    wall_s: float = 0.0
    lost_workers: list[str] = field(default_factory=list)
    stalled: bool = False  # the strategy stopped asking before it was done (a bug)


def drive(strategy: Strategy, workers: list[Worker], on_event: EventSink | None = None,
          via: str | None = None) -> LoopResult:
    """Run ``strategy`` to completion on ``workers``.

    No memo here: a strategy never asks for a keep-set it was told (``Strategy.ask``), and a
    chain tells its later stages from its own record. Rounds: a plan asked after k dependent
    results sits at depth k + 1; ``rounds`` is the deepest. A worker takes up to its
    ``plans_per_run`` plans a call (the switchboard's batch); ``via`` overrides how workers
    evaluate ("candidate" or "switchboard"; None: each worker's default).
    """
    emit = on_event or (lambda kind, data: None)
    out = LoopResult()
    free = deque(workers)
    in_flight: dict[ray.ObjectRef, tuple[tuple[Keep, ...], Worker, int]] = {}
    cancelling: set[ray.ObjectRef] = set()
    depth_now = 0
    t_start = time.perf_counter()

    def capacity(w: Worker) -> int:
        return 1 if via == "candidate" else w.plans_per_run

    while True:
        t0 = time.perf_counter()
        asked = True
        while free and asked:
            asked = False
            plans = deque(strategy.ask(sum(capacity(w) for w in free)))
            while plans and free:
                asked = True
                worker = free.popleft()
                batch = [plans.popleft()]
                if strategy.wants_profile(batch[0]):
                    ref = worker.handle.evaluate.remote(batch[0], True, via)
                else:
                    while plans and len(batch) < capacity(worker) and not strategy.wants_profile(
                            plans[0]):
                        batch.append(plans.popleft())
                    ref = worker.handle.evaluate_many.remote(batch, via)
                in_flight[ref] = (tuple(batch), worker, depth_now + 1)
                for keep in batch:
                    emit("start", {"worker": worker.name, "size": len(keep), "keep": keep,
                                   "depth": depth_now + 1, "status": strategy.status()})
            for keep in plans:  # more plans than free slots: asked again later
                strategy.forget(keep)
        if not in_flight:
            out.driver_s += time.perf_counter() - t0
            out.stalled = not strategy.done  # asked for nothing more, yet not finished
            break
        out.driver_s += time.perf_counter() - t0
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        ready += [r for r in ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)[0]
                  if r not in ready]
        t0 = time.perf_counter()
        for ref in ready:
            keeps, worker, depth = in_flight.pop(ref)
            cancelling.discard(ref)
            try:
                evs = ray.get(ref)
            except ray.exceptions.TaskCancelledError:
                out.cancelled += len(keeps)
                for keep in keeps:
                    strategy.forget(keep)
                free.append(worker)
                emit("cancelled", {"worker": worker.name, "size": len(keeps[0])})
                continue
            except ray.exceptions.RayActorError as exc:
                # A lost worker never decides a verdict: its plans go back to the strategy,
                # to be asked again on the workers left (none left: SearchError below).
                out.lost_workers.append(worker.name)
                for keep in keeps:
                    strategy.forget(keep)
                emit("worker_lost", {"worker": worker.name,
                                     "reason": f"worker {worker.name} died: {cause(exc)}"})
                continue
            free.append(worker)
            for ev in evs if isinstance(evs, list) else [evs]:
                out.evaluations.append(ev)
                out.depth[ev.keep] = depth
                out.rounds = max(out.rounds, depth)
                depth_now = max(depth_now, depth)
                strategy.tell(ev.keep, ev.verdict, ev.info())
                emit("done", {"worker": worker.name, "evaluation": ev, "depth": depth,
                              "status": strategy.status()})
        for ref, (keeps, _, _) in in_flight.items():
            if ref not in cancelling and not any(strategy.wanted(k) for k in keeps):
                ray.cancel(ref)
                cancelling.add(ref)
        if not free and not in_flight and not strategy.done:
            raise SearchError(f"every evaluator actor died (last: {out.lost_workers[-1]}); "
                              "the search could not finish")
        out.driver_s += time.perf_counter() - t0
    out.wall_s = time.perf_counter() - t_start
    return out
