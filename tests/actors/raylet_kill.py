"""Run by test_raylet_kill.py in its own process: a local three-node Ray cluster
(ray.cluster_utils) whose one worker node is removed, raylet and all, mid-search: the
node of a worker that was just handed a plan.

Prints one JSON line: the clean and the faulted outcome, the losses the loop counted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import ray
from planted_helpers import CHECK, PLANTS
from ray.cluster_utils import Cluster

from distprec.actors.loop import drive
from distprec.actors.pool import start_workers, stop_workers
from distprec.atomic import write_bytes
from distprec.demo import planted_mlp
from distprec.search import SearchConfig, prepare
from distprec.strategies import make_strategy


def main(folder: str, strategy: str, at: int) -> None:
    model = planted_mlp(blocks=8, plants=PLANTS)
    path = f"{folder}/planted.onnx"
    write_bytes(path, model.model.SerializeToString())
    # While the file `slowly` exists each check takes 2 s, so the kill lands mid-evaluation:
    # from the faulted run's start until its lost plan is requeued. The clean run (only its
    # answer counts) and the faulted run's plans after the loss judge at once.
    slowly = f"{folder}/slowly"
    slow = f"{folder}/slow.py"
    with open(slow, "w") as f:
        f.write(f"import os\nimport time\n\n\ndef check(golden, outputs):\n"
                f"    if os.path.exists({slowly!r}):\n        time.sleep(2)\n"
                f"    return True\n")
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "resources": {"slot": 1}})
    nodes = [cluster.add_node(num_cpus=1, resources={"slot": 1}) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    cluster.wait_for_nodes()
    cfg = SearchConfig(model=path, precision="fp16", device="cpu", samples=2,
                       check=dataclasses.replace(CHECK, check_func=f"{slow}:check"),
                       evaluate="candidate", layer_errors="none")
    prep = prepare(cfg)
    setup_ref = ray.put(prep.setup(cfg))

    def run(kill_at: int | None):
        workers = start_workers(setup_ref, "cpu", 2, resources={"slot": 1}, max_restarts=3)
        by_id = {n.node_id: n for n in nodes}
        node_of = {w.name: by_id.get(w.node_id) for w in workers}  # None: on the head
        starts, killed = 0, []

        def on_event(kind, data):
            """From the kill_at-th start on: the node of the worker just handed a plan
            (the head is spared: the driver lives there)."""
            nonlocal starts
            if kind == "requeued" and killed and os.path.exists(slowly):
                os.remove(slowly)  # the lost plan is back in the queue: no need to wait
            if kind == "start":
                starts += 1
                node = node_of.get(data["worker"])
                if kill_at is not None and starts >= kill_at and node and not killed:
                    cluster.remove_node(node, allow_graceful=False)
                    killed.append(node.node_id)

        s = make_strategy(strategy, prep.searchable, "forward")
        try:
            loop = drive(s, workers, on_event, via="candidate")
        finally:
            stop_workers(workers)
        r = s.result()
        keeps = [sorted(e.keep) for e in loop.evaluations]
        return {"keep": sorted(r.keep or ()), "passed": r.passed, "minimal": r.minimal,
                "killed": len(killed), "lost": len(loop.lost_workers),
                "requeued": loop.requeued, "restarts": loop.restarts, "gone": len(loop.gone),
                "evaluations": len(keeps), "unique": len({tuple(k) for k in keeps}),
                "died_verdicts": sum("died" in e.reason for e in loop.evaluations)}

    clean = run(None)
    open(slowly, "w").close()
    faulted = run(at)
    print(json.dumps({"clean": clean, "faulted": faulted}))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
