"""The driver loop: ask the strategy, keep every worker busy, tell verdicts back.

A ``ray.wait`` loop rather than ``ray.util.ActorPool``: it controls retries, cancellation
and progress, and ActorPool never resubmits work of a dead actor.

Faults (docs/RELIABILITY.md): a lost worker is never a verdict. The plans it held go back
to the queue, one plan a call (a batch that killed its worker does not take its neighbours
down again), and the slot waits for Ray to restart the actor (``max_restarts``). A call
that runs past ``eval_timeout`` seconds a plan is killed and its plans requeued; a plan
that times out ``max_timeouts`` times is told as an error, and one whose workers died
``max_losses`` times ends the search: the check or the runtime crashes on it, which is not
a property of the model.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import ray

from distprec.actors.pool import Worker
from distprec.errors import SearchError, cause
from distprec.evaluation.removals import Removals
from distprec.evaluator import Evaluation
from distprec.strategies.base import Keep, Strategy, Verdict

EventSink = Callable[[str, dict], None]

#: Longest single ``ray.wait``: Python signal handlers (SIGINT, SIGTERM) run between them.
WAIT_SLICE_S = 0.5
#: Pause between ``ready`` pings of an actor Ray is restarting (they fail while it is).
RETRY_PING_S = 0.2
#: Plans a call of the removals path takes (evaluation/removals.py): its session is built
#: once a worker, then a plan costs a run, so a call holds a worker's whole share.
REMOVALS_PER_CALL = 256


@dataclass(frozen=True)
class Faults:
    """How the loop treats hung and lost workers."""

    eval_timeout: float | None = None  # seconds a plan; None: no limit
    max_timeouts: int = 2  # a plan timing out this often is told as an error
    max_losses: int = 3  # a plan whose worker died this often ends the search
    restart_wait: float = 120.0  # seconds a lost worker may take to come back


@dataclass
class LoopResult:
    evaluations: list[Evaluation] = field(default_factory=list)  # in completion order
    depth: dict[Keep, int] = field(default_factory=dict)
    told_s: dict[Keep, float] = field(default_factory=dict)  # verdict told, s after start
    rounds: int = 0  # longest chain of evaluations that depended on one another
    cancelled: int = 0
    driver_s: float = 0.0  # time the loop itself spent (not waiting for workers)
    wall_s: float = 0.0
    lost_workers: list[str] = field(default_factory=list)  # one entry per loss (or kill)
    gone: list[str] = field(default_factory=list)  # workers that did not come back
    restarts: int = 0  # lost workers that came back
    requeued: int = 0  # plans sent again because their worker died or hung
    timeouts: int = 0  # calls killed for running past the timeout
    stalled: bool = False  # the strategy stopped asking before it was done (a bug)
    out_of_time: bool = False  # the budget ran out before the strategy was done

    def add(self, part: LoopResult) -> None:
        """Phases run one after another: their rounds and times add up."""
        offset = self.rounds
        self.evaluations += part.evaluations
        self.depth.update({k: d + offset for k, d in part.depth.items()})
        self.told_s.update({k: t + self.wall_s for k, t in part.told_s.items()})
        self.rounds += part.rounds
        self.cancelled += part.cancelled
        self.driver_s += part.driver_s
        self.wall_s += part.wall_s
        self.lost_workers += part.lost_workers
        self.gone += part.gone
        self.restarts += part.restarts
        self.requeued += part.requeued
        self.timeouts += part.timeouts
        self.stalled = self.stalled or part.stalled
        self.out_of_time = self.out_of_time or part.out_of_time


def drive(strategy: Strategy, workers: list[Worker], on_event: EventSink | None = None,
          via: str | Removals | None = None, faults: Faults | None = None,
          budget_s: float | None = None) -> LoopResult:
    """Run ``strategy`` to completion on ``workers``.

    No memo here: a strategy never asks for a keep-set it was told (``Strategy.ask``), and a
    chain tells its later stages from its own record. Rounds: a plan asked after k dependent
    results sits at depth k + 1; ``rounds`` is the deepest. A worker takes up to its
    ``plans_per_run`` plans a call (the switchboard's batch); ``via`` overrides how workers
    evaluate ("candidate", "switchboard", or an answer's own switchboard, ``Removals``;
    None: each worker's default, which a worker may change as its paths are measured: each
    evaluation says how many plans it takes a call from then on). ``budget_s``: no plan is
    asked after that many seconds; the plans in flight finish, and ``out_of_time`` says
    the strategy was not done.
    """
    emit = on_event or (lambda kind, data: None)
    faults = faults or Faults()
    out = LoopResult()
    free = deque(workers)
    # ref -> (plans, worker, depth, deadline)
    in_flight: dict[ray.ObjectRef, tuple[tuple[Keep, ...], Worker, int, float]] = {}
    cancelling: set[ray.ObjectRef] = set()
    retry: deque[tuple[Keep, int]] = deque()  # plans of lost or hung calls, with their depth
    restarting: dict[ray.ObjectRef, tuple[Worker, float]] = {}  # ready() pings, lost at
    later: list[tuple[float, Worker, float]] = []  # pings to send again: due, worker, lost at
    losses: dict[Keep, int] = {}
    timeouts: dict[Keep, int] = {}
    depth_now = 0
    t_start = time.perf_counter()
    inf = float("inf")

    def capacity(w: Worker) -> int:
        if isinstance(via, Removals):  # a session once, then a run a plan (removals.py)
            return REMOVALS_PER_CALL
        return w.lanes if via == "candidate" else w.plans_per_run

    def send(worker: Worker, batch: list[Keep], depth: int) -> None:
        if strategy.wants_profile(batch[0]):
            ref = worker.handle.evaluate.remote(batch[0], True, via)
        else:
            ref = worker.handle.evaluate_many.remote(batch, via)
        limit = faults.eval_timeout
        in_flight[ref] = (tuple(batch), worker, depth,
                          time.perf_counter() + limit * len(batch) if limit else inf)
        for keep in batch:
            emit("start", {"worker": worker.name, "size": len(keep), "keep": keep,
                           "depth": depth, **progress(strategy)})

    def restart(worker: Worker, since: float | None = None) -> None:
        restarting[worker.handle.ready.remote()] = (worker, since or time.perf_counter())

    def gone(worker: Worker, why: str) -> None:
        out.gone.append(worker.name)
        emit("worker_gone", {"worker": worker.name, "reason": why})

    def requeue(keeps: tuple[Keep, ...], depth: int, why: str) -> None:
        out.requeued += len(keeps)
        for keep in keeps:
            retry.append((keep, depth))
            emit("requeued", {"size": len(keep), "keep": keep, "reason": why})

    while True:
        t0 = time.perf_counter()
        while free and retry:  # lost plans first, one a call
            keep, depth = retry.popleft()
            if strategy.wanted(keep):
                send(free.popleft(), [keep], depth)
            else:
                strategy.forget(keep)
        asked = budget_s is None or time.perf_counter() - t_start < budget_s
        out.out_of_time = not asked and not strategy.done
        while free and asked:
            asked = False
            strategy.costs(round_cost(list(free), capacity))
            plans = deque(strategy.ask(sum(capacity(w) for w in free)))
            # Spread evenly: fewer plans than the free workers take go one share to each,
            # not all to the first (measured: 3 workers of 32 plans a run, 2 kept busy).
            share = -(-len(plans) // len(free))
            while plans and free:
                asked = True
                worker = free.popleft()
                batch = [plans.popleft()]
                if not strategy.wants_profile(batch[0]):
                    while plans and len(batch) < min(capacity(worker), share) \
                            and not strategy.wants_profile(plans[0]):
                        batch.append(plans.popleft())
                send(worker, batch, depth_now + 1)
            # Plans a batch could not take (a plan that wants a profile runs alone): sent
            # first when a worker frees up. Not forgotten: a strategy re-asks a forgotten
            # plan only once it is wanted again (Strategy.forget), and these still are.
            retry.extend((keep, depth_now + 1) for keep in plans)
        now = time.perf_counter()
        for item in [x for x in later if x[0] <= now]:
            later.remove(item)
            restart(item[1], item[2])
        if not in_flight and not restarting and not later and not free and not strategy.done:
            raise SearchError(f"every evaluator actor died (last: {out.lost_workers[-1]}); "
                              "the search could not finish")
        if not in_flight and not retry and (free or strategy.done):
            out.driver_s += time.perf_counter() - t0
            # asked for nothing more, yet not finished
            out.stalled = not strategy.done and not out.out_of_time
            break
        out.driver_s += time.perf_counter() - t0
        deadline = min([d for *_, d in in_flight.values()] + [d for d, *_ in later], default=inf)
        refs = [*in_flight, *restarting]
        timeout = max(0.0, min(WAIT_SLICE_S, deadline - time.perf_counter()))
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout) if refs else ([], [])
        if not refs:
            time.sleep(timeout)
        if ready and len(refs) > 1:
            ready += [r for r in ray.wait(refs, num_returns=len(refs), timeout=0)[0]
                      if r not in ready]
        t0 = time.perf_counter()
        for ref in ready:
            if ref in restarting:
                worker, since = restarting.pop(ref)
                try:
                    ray.get(ref)
                except ray.exceptions.ActorUnavailableError as exc:  # still restarting
                    if time.perf_counter() - since < faults.restart_wait:
                        later.append((time.perf_counter() + RETRY_PING_S, worker, since))
                    else:
                        gone(worker, f"not back after {faults.restart_wait:g} s: {cause(exc)}")
                except ray.exceptions.RayActorError as exc:  # out of restarts, or killed
                    gone(worker, cause(exc))
                else:
                    out.restarts += 1
                    free.append(worker)
                    emit("worker_restarted", {"worker": worker.name})
                continue
            keeps, worker, depth, _ = in_flight.pop(ref)
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
                # A lost worker never decides a verdict: its plans are requeued for the
                # workers left (or its restarted slot).
                out.lost_workers.append(worker.name)
                reason = f"worker {worker.name} died: {cause(exc)}"
                emit("worker_lost", {"worker": worker.name, "reason": reason})
                restart(worker)
                for keep in keeps:
                    losses[keep] = losses.get(keep, 0) + 1
                    if losses[keep] >= faults.max_losses:
                        raise SearchError(
                            f"a plan keeping {len(keep)} layer(s) killed {losses[keep]} "
                            f"workers (last: {cause(exc)}): the check or the runtime crashes "
                            "on it") from None
                requeue(keeps, depth, reason)
                continue
            free.append(worker)
            evs = evs if isinstance(evs, list) else [evs]
            if evs and via is None:  # its path may have changed (Evaluation.capacity)
                if evs[-1].via != worker.via:
                    emit("phase", {"name": f"{worker.name}: plans now go to the "
                                           f"{evs[-1].via}, {evs[-1].capacity} a call"})
                worker.plans_per_run, worker.via = evs[-1].capacity, evs[-1].via
                worker.run_costs = evs[-1].run_costs or worker.run_costs
            for ev in evs:
                out.evaluations.append(ev)
                out.depth[ev.keep] = depth
                out.told_s[ev.keep] = time.perf_counter() - t_start
                out.rounds = max(out.rounds, depth)
                depth_now = max(depth_now, depth)
                strategy.tell(ev.keep, ev.verdict, ev.info())
                emit("done", {"worker": worker.name, "evaluation": ev, "depth": depth,
                              **progress(strategy)})
        if faults.eval_timeout:
            now = time.perf_counter()
            for ref in [r for r, v in in_flight.items() if v[3] <= now]:
                keeps, worker, depth, _ = in_flight.pop(ref)
                cancelling.discard(ref)
                _timed_out(ref, keeps, worker, depth, faults, out, timeouts, emit, strategy)
                restart(worker)
                again = tuple(k for k in keeps if timeouts[k] < faults.max_timeouts)
                if again:
                    requeue(again, depth, f"worker {worker.name} timed out")
        for ref, (keeps, *_) in in_flight.items():
            if ref not in cancelling and not any(strategy.wanted(k) for k in keeps):
                ray.cancel(ref)
                cancelling.add(ref)
        out.driver_s += time.perf_counter() - t0
    out.wall_s = time.perf_counter() - t_start
    return out


def progress(strategy: Strategy) -> dict:
    """What ``start`` and ``done`` events tell the view of the strategy: its ``status``,
    and the plans it has left (``plans_left``: None where unknown; ``left_bound``: True
    where that figure is an upper bound, False where an estimate)."""
    return {"status": strategy.status(), "plans_left": strategy.plans_left(),
            "left_bound": bool(strategy.plans_left_bound)}


def round_cost(free: list[Worker], capacity: Callable[[Worker], int]
               ) -> Callable[[int], float] | None:
    """Seconds a round of k plans costs on the ``free`` workers, spread as the loop spreads
    them (an even share each), from each worker's measured ``run_costs``; None while some
    worker's costs are unknown."""
    tables = [w.run_costs[:capacity(w)] for w in free]
    if not tables or not all(tables):
        return None

    def round_s(k: int) -> float:
        share = -(-k // len(tables))
        return max(t[min(share, len(t)) - 1] * (share / min(share, len(t))) for t in tables)
    return round_s


def _timed_out(ref, keeps: tuple[Keep, ...], worker: Worker, depth: int, faults: Faults,
               out: LoopResult, timeouts: dict[Keep, int], emit: EventSink,
               strategy: Strategy) -> None:
    """Kill a hung call's actor (Ray restarts it) and tell plans out of retries an error."""
    out.timeouts += 1
    out.lost_workers.append(worker.name)
    ray.kill(worker.handle, no_restart=False)
    emit("worker_lost", {"worker": worker.name,
                         "reason": f"timed out after {faults.eval_timeout:g} s a plan"})
    now = time.time()
    for keep in keeps:
        timeouts[keep] = timeouts.get(keep, 0) + 1
        if timeouts[keep] >= faults.max_timeouts:
            ev = Evaluation(keep, Verdict.ERROR, worker=worker.name, node=worker.node,
                            device=worker.device, node_id=worker.node_id, start=now, end=now,
                            reason=f"timeout: ran past --eval-timeout {faults.eval_timeout:g} s "
                            f"{timeouts[keep]} times")
            out.evaluations.append(ev)
            out.depth[keep] = depth
            strategy.tell(keep, ev.verdict, ev.info())
            emit("done", {"worker": worker.name, "evaluation": ev, "depth": depth,
                          **progress(strategy)})
