"""Placing a search's evaluator actors on nodes of one device kind, or failing fast.

A node advertises its kind (``distprec node-args``) two ways: the custom resource
``distprec_<kind>`` (one unit per evaluator slot) and the label ``distprec.device=<kind>``.
Each actor asks for one unit of the resource, so no two evaluators share a slot, and for
the label when the kind's nodes carry it. Ray never errors on a request no node can meet
(the actor stays pending forever), so the kind is checked against the cluster's nodes
first, and actor start-up is bounded by ``wait`` seconds.
"""

from __future__ import annotations

import ray

from distprec.actors.pool import PROBE_S, Worker, connect, start_workers
from distprec.devices import LABEL, RESOURCE_PREFIX, detect, resource_name
from distprec.errors import InputError

JOIN_HINT = "a node joins with: ray start --address HEAD:6379 $(distprec node-args)"


def connect_as_host(address: str | None, wait: float = PROBE_S) -> None:
    """Join ``address``, or start a local instance that offers this host's own kind.

    A joined cluster's nodes advertise their kinds themselves (``distprec node-args``); a
    local instance does so here, so that ``--devices cpu`` works on a laptop. Without an
    address the instance is always a new one ("local"): a plain ``ray.init()`` would join
    whatever cluster another user last started on this machine.
    """
    if address is not None or ray.is_initialized():
        connect(address, probe_s=wait)  # a silent address: one line within min(15 s, wait)
        return
    host = detect()
    connect("local", {resource_name(host.kind): host.slots}, {LABEL: host.kind})


def node_kinds() -> dict[str, str]:
    """Ray node id -> device kind, for every alive node that advertises one."""
    out = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        kind = (node.get("Labels") or {}).get(LABEL)
        if kind is None:  # a hand-started node with the resource only
            kinds = [r[len(RESOURCE_PREFIX):] for r in node.get("Resources", {})
                     if r.startswith(RESOURCE_PREFIX)]
            kind = kinds[0] if len(kinds) == 1 else None
        if kind is not None:
            out[node["NodeID"]] = kind
    return out


def slots(kind: str, device: str) -> tuple[int, bool]:
    """Evaluator slots the cluster offers for ``kind`` with this backend ``device``.

    A slot needs one unit of the kind's resource and, for the actor itself, one CPU (the
    CPU backend) or one GPU (cuda) on the same node. Also says whether every node that
    offers the kind carries its label (then the label selector can be used too).
    """
    total, labelled = 0, True
    need = "GPU" if device == "cuda" else "CPU"
    for node in ray.nodes():
        res = node.get("Resources", {})
        if not node.get("Alive") or res.get(resource_name(kind), 0) < 1:
            continue
        total += int(min(res[resource_name(kind)], res.get(need, 0)))
        labelled &= (node.get("Labels") or {}).get(LABEL) == kind
    return total, labelled


def require(kind: str, device: str) -> tuple[int, bool]:
    """``slots`` of ``kind``, or an InputError at once when no node can hold an evaluator."""
    have, labelled = slots(kind, device)
    if have:
        return have, labelled
    if ray.cluster_resources().get(resource_name(kind), 0) < 1:
        offered = sorted(set(node_kinds().values()))
        raise InputError(f"no node of device kind {kind!r} in the Ray cluster (kinds offered: "
                         f"{', '.join(offered) or 'none'}); {JOIN_HINT}")
    need = "GPU" if device == "cuda" else "CPU"
    raise InputError(f"the nodes of device kind {kind!r} offer no {need} for an evaluator "
                     f"with the {device} backend")


def start_on_kind(setup_ref, device: str, kind: str, count: int, wait: float,
                  prefix: str = "w", labelled: bool = True,
                  max_restarts: int = 0) -> list[Worker]:
    """``count`` evaluator actors on nodes of ``kind``; InputError after ``wait`` seconds.
    ``max_restarts``: how often Ray brings a lost one back in its slot."""
    selector = {LABEL: kind} if labelled else None
    try:
        return start_workers(setup_ref, device, count, resources={resource_name(kind): 1},
                             label_selector=selector, timeout=wait, prefix=prefix,
                             max_restarts=max_restarts)
    except InputError as exc:  # most often: the kind's slots are held by other searches
        free = ray.available_resources().get(resource_name(kind), 0)
        raise InputError(f"device kind {kind!r}: {exc} ({free:g} of its slots free now)") \
            from None
