"""Run by tests/test_multinode.py in a subprocess of its own (not collected by pytest).

Starts a Ray cluster on this machine whose worker nodes advertise nano, tx2 and xavier-nx
(label and custom resource, as ``distprec node-args`` would), runs the CLI against it and
writes what the test checks to ``OUT/report.json``. A subprocess, because a multi-node
Cluster cannot share a process with another test's ``ray.init`` session, and because
RAY_TMPDIR (set by the test) keeps this cluster's address file away from other Ray users
of the machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from distprec.atomic import write_bytes
from distprec.cli import main
from distprec.demo import DEMO_ATOL, DEMO_RTOL, planted_mlp
from distprec.devices import LABEL, resource_name

KINDS = {"nano": 1, "tx2": 1, "xavier-nx": 2}  # kind -> CPUs (and slots) of its node
CHECK = ["--atol", str(DEMO_ATOL), "--rtol", str(DEMO_RTOL), "--samples", "4"]


def cli(*args: str) -> dict:
    """distprec in this process: exit code, stdout, stderr lines and seconds taken."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue().splitlines(),
            "seconds": time.monotonic() - t0}


def main_(out: Path) -> None:
    model = out / "planted.onnx"
    write_bytes(model, planted_mlp(blocks=8).model.SerializeToString())
    # The head holds a CPU but no kind: an evaluator routed wrongly could land there.
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for kind, cpus in KINDS.items():
            cluster.add_node(num_cpus=cpus, resources={resource_name(kind): cpus},
                             labels={LABEL: kind})
        cluster.wait_for_nodes()
        addr = cluster.address
        report: dict = {}
        report["sweep"] = cli("sweep", str(model), "--devices", "nano,tx2,xavier-nx",
                              "--precision", "fp16,int8", "--address", addr,
                              "-o", str(out / "sweep.json"), *CHECK)
        # Ground truth from the cluster itself, not from distprec: node id -> kind label.
        report["nodes"] = {n["NodeID"]: (n.get("Labels") or {}).get(LABEL)
                           for n in ray.nodes() if n["Alive"]}
        report["search"] = cli("search", str(model), "--kind", "tx2", "--device", "cpu",
                               "--address", addr, "--no-live", "-o",
                               str(out / "search_tx2.json"), *CHECK)
        report["missing"] = cli("sweep", str(model), "--devices", "orin", "--address", addr,
                                "--wait", "20", "-o", str(out / "missing.json"), *CHECK)
        # Another job holds the only nano slot: the evaluators cannot start and must give
        # up after --wait seconds rather than pend forever.
        holder = ray.remote(num_cpus=1, resources={resource_name("nano"): 1})(_Hold).remote()
        ray.get(holder.ping.remote(), timeout=60)
        report["busy"] = cli("sweep", str(model), "--devices", "nano", "--address", addr,
                             "--wait", "3", "-o", str(out / "busy.json"), *CHECK)
        ray.kill(holder)
        (out / "report.json").write_text(json.dumps(report, indent=1))
    finally:
        ray.shutdown()
        cluster.shutdown()


class _Hold:
    def ping(self) -> int:
        return 1


if __name__ == "__main__":
    main_(Path(sys.argv[1]))
