"""The proxy evaluator actor: one per board, on the driver's node, driving it over SSH.

It answers the same calls as EvaluatorActor (ready, evaluate, evaluate_many, profile,
time_fp32), so the driver loop, the strategies and the live view treat a board as one more
worker. The
Evaluator inside is the local one with a RemoteBackend (distprec/boards/proxy.py): the
candidates and the switchboard are built here, run on the board, and checked here.

A board that cannot be reached again (``BoardLost``) ends the actor's process: the loop
sees a lost worker, requeues its plans and waits for Ray's restart, whose __init__
connects afresh; a board that stays away fails that __init__ and is shown as gone.
"""

from __future__ import annotations

import os

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from distprec.actors.pool import Worker
from distprec.boards.inventory import Board
from distprec.boards.proxy import BoardLost, RemoteBackend
from distprec.errors import InputError, cause
from distprec.evaluator import Evaluation, Evaluator, Setup
from distprec.strategies.base import Keep


def _lost(exc: BoardLost):
    """Leave: Ray reports the actor dead, the loop requeues, Ray restarts it (reconnect)."""
    print(f"distprec: {exc}; the proxy exits so its plans are requeued", flush=True)
    os._exit(75)


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class ProxyActor:
    def __init__(self, setup: Setup, board: Board, worker: str,
                 ssh_options: tuple[str, ...] = ()) -> None:
        self.board = board
        try:
            backend = RemoteBackend(board, ssh_options, precision=setup.precision,
                                    ranges_json=setup.ranges_json)
            self.evaluator = Evaluator(setup, backend, worker,
                                       ray.get_runtime_context().get_node_id())
            self.evaluator.node = f"{board.name}@{board.host}"
            self.evaluator.warm_up()
        except BoardLost as exc:
            raise ConnectionError(str(exc)) from None

    def ready(self) -> dict:
        ev = self.evaluator
        return {"worker": ev.worker, "pid": os.getpid(), "node": ev.node,
                "device": ev.backend.device_name(), "node_id": ev.node_id, "gpus": [],
                "plans_per_run": ev.plans_per_run, "via": ev.default_via,
                "switch_note": ev.switch_note, "board": ev.backend.facts}

    def evaluate(self, keep: Keep, profile: bool = False, via: str | None = None) -> Evaluation:
        try:
            return self.evaluator.evaluate(keep, profile, via)
        except BoardLost as exc:
            _lost(exc)

    def evaluate_many(self, keeps: list[Keep], via: str | None = None) -> list[Evaluation]:
        try:
            return self.evaluator.evaluate_many(keeps, via)
        except BoardLost as exc:
            _lost(exc)

    def profile(self, keep: Keep) -> dict[str, dict[str, float]]:
        try:
            return self.evaluator.profile(keep)
        except BoardLost as exc:
            _lost(exc)

    def time_fp32(self) -> dict:
        """The FP32 model's latency timed on the board (latency.Timing.record)."""
        try:
            return self.evaluator.timed().fp32().record()
        except BoardLost as exc:
            _lost(exc)

    def stats(self) -> dict:
        """How the connection fared: reconnects made, runs done, the runner's pid."""
        b = self.evaluator.backend
        return {"reconnects": b.reconnects, "runs": b.runs, "timings": b.timings,
                "runner_pid": b.facts.get("pid")}


def runtime_label(worker: Worker) -> str:
    """What a board evaluated with, from its device name: ort-cpu, ort-cuda, trt-8.2.1..."""
    runtime = worker.device.rpartition("/")[2]
    return f"ort-{runtime}" if runtime in ("cpu", "cuda") else runtime


def start_proxies(setup_ref, boards: list[Board], *, ssh_options: tuple[str, ...] = (),
                  max_restarts: int = 3, timeout: float = 120.0,
                  prefix: str = "") -> list[Worker]:
    """One ProxyActor per board, pinned to the driver's node (where the key files are)."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    handles = [ProxyActor.options(scheduling_strategy=here, max_restarts=max_restarts).remote(
        setup_ref, b, f"{prefix}{b.name}", ssh_options) for b in boards]
    try:
        info = ray.get([h.ready.remote() for h in handles], timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        for h in handles:
            ray.kill(h)
        raise InputError(f"board proxies did not start within {timeout:.0f} s") from None
    except ray.exceptions.RayActorError as exc:
        for h in handles:
            ray.kill(h)
        raise InputError(f"a board cannot be used: {cause(exc)}") from None
    return [Worker(i["worker"], h, i["node"], i["device"], i.get("node_id", ""), (),
                   i.get("plans_per_run", 1), i.get("via", "candidate"),
                   i.get("switch_note", ""), i.get("pid", 0), board=True)
            for h, i in zip(handles, info)]
