"""Run in a subprocess by test_gpu_placement.py: Ray instances with fake GPUs.

Ray schedules by resource counts, so ``num_gpus=N`` on a host without GPUs gives N GPU
slots; the actors then run the CPU backend. Each GPUS:PER_GPU argument gets a Ray
instance of its own, shut down before the next one starts; one JSON line with what was
seen for each, keyed by the argument.
"""

from __future__ import annotations

import json
import sys

import ray

from distprec.actors.loop import drive
from distprec.actors.pool import start_workers, stop_workers
from distprec.demo import DEMO_CHECK, planted_mlp
from distprec.search import SearchConfig, prepare
from distprec.strategies import make_strategy


def main(model_path: str, gpus: int, per_gpu: int = 1) -> dict:
    ray.init(address="local", num_cpus=1, num_gpus=gpus, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    try:
        cfg = SearchConfig(model=model_path, device="cpu",
                           check=DEMO_CHECK)
        prep = prepare(cfg)
        workers = start_workers(ray.put(prep.setup(cfg)), "cuda", None, backend="cpu",
                                per_gpu=per_gpu)
        strategy = make_strategy("bisect", prep.searchable)
        loop = drive(strategy, workers)
        stop_workers(workers)
        # what this instance offered, from Ray itself: none left over from another one
        total = ray.cluster_resources()
    finally:
        ray.shutdown()
    return {
        "cluster_gpus": total.get("GPU", 0),
        "workers": len(workers),
        "gpu_ids": sorted(g for w in workers for g in w.gpus),
        "used": sorted({e.worker for e in loop.evaluations}),
        "rounds": loop.rounds,
        "layers": len(prep.searchable),
        "found": sorted(strategy.result().keep or ()),
        "planted": sorted(planted_mlp(blocks=12).planted),
    }


if __name__ == "__main__":
    for case in sys.argv[2:]:
        gpus, per_gpu = map(int, case.split(":"))
        print(json.dumps({case: main(sys.argv[1], gpus, per_gpu)}), flush=True)
