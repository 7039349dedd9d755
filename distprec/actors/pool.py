"""Connecting to Ray and placing evaluator actors on the resources that are there."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ray

from distprec import raylog
from distprec.actors.evaluator import EvaluatorActor
from distprec.errors import InputError, cause, first_line
from distprec.reaper import watch
from distprec.signals import rearm

PROBE_S = 10.0  # the longest a silent --address is waited for (--wait when shorter)


@dataclass
class Worker:
    name: str
    handle: ray.actor.ActorHandle
    node: str = ""
    device: str = ""
    node_id: str = ""  # Ray node id (several nodes may share one hostname)
    gpus: tuple[str, ...] = ()  # the GPU ids Ray gave the actor (CUDA_VISIBLE_DEVICES)
    plans_per_run: int = 1  # plans one call evaluates at once (the switchboard's batch)
    via: str = "candidate"  # how the worker evaluates by default: candidate or switchboard
    switch_note: str = ""  # how its switchboard was set up, or why it has none
    pid: int = 0  # the actor's process when it started (tests kill it)
    run_costs: tuple[float, ...] = ()  # seconds of a call of 1..plans_per_run plans
    lanes: int = 1  # candidates it evaluates at once (choices.candidate_lanes)
    board: bool = False  # a proxy of a board over SSH (its runtime is on the board)


def connect(address: str | None = None, resources: dict | None = None,
            labels: dict | None = None, probe_s: float = PROBE_S) -> None:
    """A new local instance by default; ``address`` joins a running cluster.

    "local", not ``None``: a plain ``ray.init()`` would join whatever cluster RAY_ADDRESS
    or the last ``ray start`` on this host names (``--address auto`` asks for that).

    Joining needs the cluster's token in RAY_AUTH_TOKEN (token auth is on by default).
    Ray's own log lines are kept off the terminal: the console owns it. Under the
    command's RayLog they go to its log file once Ray is up. ``resources`` and
    ``labels`` only apply to a local instance (a joined cluster's nodes advertise their
    own): they let this host offer its device kind, as ``distprec node-args`` would.
    ``probe_s``: how long a joined address may stay silent (``_probe``).
    """
    address = address or "local"
    _probe(address, min(probe_s, PROBE_S))
    route = raylog.armed()
    if ray.is_initialized():
        if route:
            route.engage()
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    _keep_driver_signals()
    local = {"resources": resources, "labels": labels} if address == "local" else {}
    try:
        with _native_stderr_held():
            # Worker lines reach the driver only where a RayLog takes them into its file;
            # printed as they come they would tear the live view (distprec/raylog.py).
            ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=bool(route and route.forwards_workers),
                     configure_logging=True, **local)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = "a local instance" if address == "local" else address
        raise InputError(f"cannot start or reach Ray at {where}: "
                         f"{first_line(exc)}") from None
    rearm()  # ray.init replaces the SIGTERM handler
    if route:
        route.engage()
    if address == "local" and os.environ.get("DISTPREC_NO_REAPER") != "1":
        watch(ray._private.worker._global_node.get_session_dir_path())
    _private_token()


def _keep_driver_signals() -> None:
    """The driver keeps its own SIGTERM handler, and keeps it after ``ray.shutdown``.

    Ray's core worker installs a C++ failure handler for SIGTERM (and SIGSEGV, SIGABRT) in
    the driver, and ``ray.shutdown`` sets them all to SIG_DFL at the C level, about 1 s
    before it returns: a second signal then killed the driver mid-stop (exit -15, no
    partial result; issue 26). Ray reads this switch (``RAY_DISABLE_FAILURE_SIGNAL_HANDLER``)
    when the driver connects; set on the module, not the environment, the workers and the
    cluster's own processes keep their crash handlers.
    """
    try:
        from ray._private import ray_constants
    except ImportError:
        return
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True


def _private_token() -> None:
    """Ray writes its auth token 0644 (issue 13): make it 0600 in a 0700 folder."""
    token = Path.home() / ".ray" / "auth_token"
    try:
        if token.is_file():
            os.chmod(token.parent, 0o700)
            os.chmod(token, 0o600)
    except OSError:
        pass


@contextmanager
def _native_stderr_held():
    """Hold Ray's native log lines off the terminal while ``ray.init`` runs.

    Ray's C++ client writes to file descriptor 2, past Python's logging: refused by a
    cluster, it logs "InvalidAuthToken" once a second for 20 s ahead of distprec's own one
    line. The processes a local instance starts inherit /dev/null there; they keep their
    own log files in the session folder.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


#: HTTP/2's client preface and an empty SETTINGS frame: a Ray GCS (or Ray Client) port is
#: gRPC, and an HTTP/2 server answers them with its own SETTINGS at once.
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _probe(address: str, timeout: float = PROBE_S) -> None:
    """Fail fast on a HOST:PORT nothing answers at: ray.init would retry for minutes.

    A port that takes connections but never says anything (a firewall's tarpit, a hung
    process, a service that waits for its client to speak) hung ``ray.init`` past 150 s
    with nothing printed (issue 26). So the probe speaks first, as a gRPC client would,
    and waits ``timeout`` seconds for any byte. A port that answers, or closes (TLS, a
    server of another kind), is left to ``ray.init`` and its own error.
    """
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or address in ("local", "auto"):
        return
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as exc:
        raise InputError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None
    with sock:
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(_H2_HELLO)
            sock.recv(9)
        except TimeoutError:
            raise InputError(f"Ray at {address} did not answer within {timeout:.0f} s: the "
                             "port takes connections but says nothing (not a Ray head's "
                             "GCS port, or a hung one)") from None
        except OSError:
            return  # reset or refused mid-way: ray.init gives its own reason


def placement(device: str, count: int | None, resources: dict | None = None,
              per_gpu: int = 1) -> tuple[int, dict]:
    """How many evaluators to start and their actor options; InputError if they cannot fit.

    Checked before any work, so a search that cannot start writes nothing. ``per_gpu``
    evaluators share each GPU (a fractional ``num_gpus``): one evaluator leaves a GPU idle
    while it rewrites and builds, so several on one GPU keep it busy (measured on an H200:
    4 made a planted search 2.2x faster, 8 made candy 2.7x faster; docs/BENCHMARKS.md).
    """
    if per_gpu < 1:
        raise InputError(f"--workers-per-gpu must be at least 1, got {per_gpu}")
    total = ray.cluster_resources()
    if device == "cuda":
        have = int(total.get("GPU", 0)) * per_gpu
        if have == 0:
            raise InputError("no GPU in the Ray cluster: use --device cpu")
        opts: dict = {"num_gpus": 1 / per_gpu, "num_cpus": 0}
    else:
        have = int(total.get("CPU", 0))
        opts = {"num_cpus": 1}
    for name, amount in (resources or {}).items():
        have = min(have, int(total.get(name, 0) // amount) * per_gpu) if amount else have
    count = count or have
    if count < 1:
        raise InputError(f"no {device} worker can be placed: the cluster offers none")
    if count > have:
        raise InputError(f"--workers {count} is more than the {have} {device.upper()} "
                         "slots the cluster has")
    return count, opts


def start_workers(setup_ref, device: str, count: int | None, *, resources: dict | None = None,
                  label_selector: dict | None = None, timeout: float = 120.0,
                  prefix: str = "w", backend: str | None = None,
                  per_gpu: int = 1, max_restarts: int = 0,
                  starting: str = "") -> list[Worker]:
    """One actor per GPU (``num_gpus=1, num_cpus=0``), or ``count`` single-CPU actors.

    A GPU actor must not hold a CPU for life: on a small host the CPUs run out before the
    GPUs and the remaining actors would wait forever without an error. ``device`` decides
    the placement, ``backend`` (default: the same) the runtime inside the actor: GPU slots
    with the CPU backend let tests fake any number of GPUs. ``max_restarts``: how often
    Ray restarts a dead actor in its slot (actors/loop.py requeues its plans).
    """
    share = per_gpu if device == "cuda" else 1
    count, opts = placement(device, count, resources, share)
    extra = {k: v / share for k, v in (resources or {}).items()}  # a node's kind, shared too
    if extra:
        opts["resources"] = extra
    if label_selector:
        opts["label_selector"] = label_selector
    opts["max_restarts"] = max_restarts
    before = _in_use()
    handles = [EvaluatorActor.options(**opts).remote(setup_ref, backend or device,
                                                     f"{prefix}{i}") for i in range(count)]
    try:
        info = ray.get([h.ready.remote() for h in handles], timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        placed = _holding(opts, count, before)
        for h in handles:
            ray.kill(h)
        if placed:  # Ray placed them: what runs in their start-up is slow or hangs
            raise InputError(f"evaluator actors were placed but did not finish starting "
                             f"within {timeout:.0f} s: {starting or 'their start-up hangs'} "
                             "(--wait S allows longer)") from None
        raise InputError(f"evaluator actors did not start within {timeout:.0f} s: no node "
                         f"offers {opts}") from None
    except ray.exceptions.RayActorError as exc:
        raise InputError(f"an evaluator actor failed to start: {cause(exc)}") from None
    return [Worker(i["worker"], h, i["node"], i["device"], i.get("node_id", ""),
                   tuple(i.get("gpus", ())), i.get("plans_per_run", 1),
                   i.get("via", "candidate"), i.get("switch_note", ""), i.get("pid", 0),
                   tuple(i.get("run_costs", ())), i.get("lanes", 1))
            for h, i in zip(handles, info)]


def _in_use() -> dict[str, float]:
    """The cluster's resources held now, by name."""
    free = ray.available_resources()
    return {k: v - free.get(k, 0.0) for k, v in ray.cluster_resources().items()}


def _holding(opts: dict, count: int, before: dict[str, float]) -> bool:
    """Whether ``count`` actors of ``opts`` hold their resources, beyond what was held
    ``before`` they were asked for: Ray holds an actor's resources from its placement on,
    while its __init__ runs."""
    now = _in_use()
    need = {"CPU": opts.get("num_cpus", 0), "GPU": opts.get("num_gpus", 0),
            **(opts.get("resources") or {})}
    return all(now.get(k, 0) - before.get(k, 0) >= count * v - 1e-6
               for k, v in need.items() if v)


def stop_workers(workers: list[Worker]) -> None:
    for w in workers:
        ray.kill(w.handle)
