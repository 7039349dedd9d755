"""The evaluator actor: one per GPU (or per CPU worker), holding one Evaluator."""

from __future__ import annotations

import os

import ray

from distprec.evaluation.choices import candidate_lanes
from distprec.evaluation.removals import Removals
from distprec.evaluator import Evaluation, Evaluator, Setup
from distprec.strategies.base import Keep


# Restarts are set per search (``start_workers(max_restarts=)``): Ray re-runs __init__ with
# the same setup reference, and the loop requeues the plans a dead actor held.
@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class EvaluatorActor:
    """Loads the model, inputs, golden outputs and calibration once; receives only plans.

    ``setup`` arrives as an object-store reference that Ray resolves before __init__, so
    every actor on a node maps the same copy.
    """

    def __init__(self, setup: Setup, device: str, worker: str) -> None:
        node_id = ray.get_runtime_context().get_node_id()
        backend = setup.make_backend(device)
        if setup.backend == "trt":  # timing caches shared through the object store
            from distprec.actors.timing import TimingShare, store_name

            backend.share = TimingShare.for_search(
                store_name(setup.model_bytes, backend.gpu, backend.api.text), worker)
        lanes = _lanes(node_id) if getattr(backend, "device", "") == "cuda" \
            and setup.backend == "ort" else 1
        self.evaluator = Evaluator(setup, backend, worker, node_id, lanes)
        self.evaluator.warm_up(background=True)  # auto: candidates while it builds

    def ready(self) -> dict[str, str]:
        return {"worker": self.evaluator.worker, "pid": os.getpid(), "node": self.evaluator.node,
                "device": self.evaluator.backend.device_name(),
                "node_id": self.evaluator.node_id, "gpus": [str(g) for g in ray.get_gpu_ids()],
                "plans_per_run": self.evaluator.plans_per_run,
                "lanes": self.evaluator.candidates.lanes,
                "run_costs": self.evaluator.run_costs(),
                "via": self.evaluator.default_via, "switch_note": self.evaluator.switch_note}

    def switch_note(self) -> str:
        """How its switchboard was set up and which path it chose, as of now."""
        self.evaluator.default_via  # noqa: B018 (adopts a switchboard prepared meanwhile)
        return self.evaluator.switch_note

    def noise(self) -> dict | None:
        """The kernel-noise band measured at start-up (confirm.py's edge verdicts)."""
        return self.evaluator.noise()

    def evaluate(self, keep: Keep, profile: bool = False,
                 via: str | Removals | None = None) -> Evaluation:
        return self.evaluator.evaluate(keep, profile, via)

    def evaluate_many(self, keeps: list[Keep],
                      via: str | Removals | None = None) -> list[Evaluation]:
        return self.evaluator.evaluate_many(keeps, via)

    def time_fp32(self) -> dict:
        """The FP32 model's latency on this worker's device (latency.Timing.record)."""
        return self.evaluator.timed().fp32().record()

    def profile(self, keep: Keep) -> dict[str, dict[str, float]]:
        return self.evaluator.profile(keep)


def _lanes(node_id: str) -> int:
    """Candidates this GPU worker evaluates at once (``choices.candidate_lanes``): its
    node's CPUs shared among the GPU workers the node can hold. A GPU worker holds no CPU
    of its own (``pool.start_workers``); CPU workers hold one each, and take one lane."""
    share = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    node = next((n for n in ray.nodes() if n.get("NodeID") == node_id), {})
    have = node.get("Resources", {})
    if not share or not have.get("GPU"):
        return 1
    return candidate_lanes(have.get("CPU", 1.0), have["GPU"] / share)
