"""Oracles for strategy tests: keep-set -> verdict, in microseconds, no ONNX."""

from __future__ import annotations

import hashlib
import math

from distprec.strategies import Verdict


def layers(n: int) -> list[str]:
    return [f"L{i:04d}" for i in range(n)]


def needs(bad) -> callable:
    """The planted oracle: passes when every bad layer is kept."""
    bad = frozenset(bad)
    return lambda keep: bad <= keep


def any_of(*sets) -> callable:
    """Monotone, several minimal answers: passes when some set is kept whole."""
    sets = [frozenset(s) for s in sets]
    return lambda keep: any(s <= keep for s in sets)


def coin(seed: int, p: float = 0.5) -> callable:
    """Non-monotonic and adversarial: a fixed pseudo-random verdict per keep-set."""
    def oracle(keep) -> bool:
        digest = hashlib.sha256(f"{seed}:{','.join(sorted(keep))}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < p
    return oracle


def additive(bad, limit: int, all_layers) -> callable:
    """Bad layers must be kept, and at most ``limit`` others may be lowered: small errors of
    lowered layers add up, so removals that pass alone can fail together."""
    bad, total = frozenset(bad), len(all_layers)
    return lambda keep: bad <= keep and total - len(keep) <= limit


def chain_profile(all_layers, bad, noise: float = 3e-4):
    """(oracle, profiler) of a toy sequential network for worst-first.

    Layers run in order; a bad layer left low turns finite inputs into inf (overflow);
    every low layer adds ``noise`` relative error; the plan passes when the output is
    finite. The profile gives each layer's figures as distprec.profile does.
    """
    bad = frozenset(bad)

    def run(keep):
        err, nonfinite, figures = 0.0, False, {}
        for layer in all_layers:
            before, before_nf = err, nonfinite
            if layer not in keep:
                if layer in bad and not nonfinite:
                    nonfinite = True
                err += noise
            figures[layer] = {"rel_l2": math.inf if nonfinite else err,
                              "nonfinite": 8 if nonfinite else 0,
                              "input_rel_l2": math.inf if before_nf else before,
                              "input_nonfinite": 8 if before_nf else 0}
        return nonfinite, figures

    def oracle(keep):
        nonfinite, _ = run(keep)
        return (Verdict.FAIL if nonfinite else Verdict.PASS,
                {"out": {"nonfinite": 8 if nonfinite else 0, "cosine": 0.0 if nonfinite else 1.0,
                         "mean_abs": 0.0}})

    def profiler(keep):
        return run(keep)[1]

    return oracle, profiler
