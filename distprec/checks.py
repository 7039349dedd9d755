"""Pass/fail of candidate outputs against golden ones, with Polygraphy's semantics.

``make_check(spec)`` returns a function ``check(golden, outputs) -> CheckResult``; the
result is truthy on pass and carries per-output figures (as Polygraphy's CompareFunc).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distprec.data import Feed, load_user_function
from distprec.errors import InputError
from distprec.usercode import guarded

STATS = ("elemwise", "max", "mean", "median", "quantile")
#: iteration: each sample judged alone, a plan passes only if all pass (``polygraphy run``);
#: pooled: one statistic over all samples together.
POOLING = ("iteration", "pooled")


@dataclass(frozen=True)
class CheckSpec:
    """Everything a check needs; plain data so that it travels to actors."""

    atol: tuple[tuple[str, float], ...] = (("", 1e-2),)  # ("", x) is the default
    rtol: tuple[tuple[str, float], ...] = (("", 1e-2),)
    stat: str = "elemwise"
    quantile: float = 0.99
    cosine_min: float | None = None
    top_k: int | None = None
    check_func: str | None = None  # FILE.py:FUNC, called as func(golden, outputs)
    pooling: str = "iteration"
    stats: tuple[tuple[str, str], ...] = ()  # per-output stat, e.g. (("out", "max"),)

    def stat_of(self, output: str) -> str:
        return dict(self.stats).get(output, self.stat)

    def tol(self, which: str, output: str) -> float:
        table = dict(self.atol if which == "atol" else self.rtol)
        return table.get(output, table.get("", 0.0))

    def describe(self) -> str:
        stat = ",".join([self.stat, *(f"{k}:{v}" for k, v in self.stats)])
        parts = [f"atol {_fmt_tol(self.atol)}", f"rtol {_fmt_tol(self.rtol)}", stat,
                 "per iteration (Polygraphy)" if self.pooling == "iteration" else "pooled"]
        if self.cosine_min is not None:
            parts.append(f"cosine >= {self.cosine_min}")
        if self.top_k:
            parts.append(f"top-{self.top_k} indices")
        if self.check_func:
            parts.append(f"func {self.check_func}")
        return ", ".join(parts)


@dataclass
class CheckResult:
    passed: bool
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> figures
    reason: str = ""  # the first failed criterion, for humans

    def __bool__(self) -> bool:
        return self.passed



def _items(text: str | list | None, valid) -> list[str]:
    """``name:value`` items of a flag: argv elements (Polygraphy's form) or a string split
    on whitespace, then on commas, a piece that is no item alone joined to the next: an
    output named ``a,b`` survives ``a,b:1e-3,c:1e-2``, and inside one argv element, spaces."""
    elements = (list(text) if isinstance(text, (list, tuple)) else (text or "").split())
    out: list[str] = []
    for element in elements:
        pending = ""
        for piece in element.split(","):
            pending = f"{pending},{piece}" if pending else piece
            if valid(pending):
                out.append(pending)
                pending = ""
        if pending:
            out.append(pending)  # refused by the caller, with its own message
    return [item for item in out if item]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_tolerances(text: str | list | None, flag: str,
                     default: float) -> tuple[tuple[str, float], ...]:
    """``1e-3`` or ``out0:1e-3,out1:1e-2`` or Polygraphy's space-separated ``1e-3 out:1e-4``
    (bare value = default for all outputs). Output names may hold commas and colons."""
    table: dict[str, float] = {"": default}
    for item in _items(text, lambda t: _is_number(t.rpartition(":")[2])):
        name, _, value = item.rpartition(":")
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{flag}: {value!r} is not a number") from None
        if not np.isfinite(number) or number < 0:
            raise InputError(f"{flag}: tolerance must be a non-negative number, got {value}")
        table[name] = number
    return tuple(table.items())


def parse_stats(text: str | list | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``--check-error-stat mean`` or Polygraphy's ``max out:mean`` -> (default, per output)."""
    default, per = "elemwise", {}
    for item in _items(text, lambda t: t.rpartition(":")[2] in STATS):
        name, _, stat = item.rpartition(":")
        if stat not in STATS:
            raise InputError(f"--check-error-stat: {stat!r} is not one of {', '.join(STATS)}")
        if name:
            per[name] = stat
        else:
            default = stat
    return default, tuple(per.items())


def make_check(spec: CheckSpec):
    user_func = load_user_function(spec.check_func, "check") if spec.check_func else None

    def check(golden: list[Feed], outputs: list[Feed]) -> CheckResult:
        result = CheckResult(True)
        for name in golden[0]:
            want = np.concatenate([np.asarray(g[name], np.float64).ravel() for g in golden])
            got = np.concatenate([np.asarray(o[name], np.float64).ravel() for o in outputs])
            figures, reason = _compare(spec, name, want, got)
            if spec.pooling == "iteration" and len(golden) > 1:
                figures, reason = _per_iteration(spec, name, golden, outputs, figures)
            if spec.top_k:
                agree = _top_k_agree(golden, outputs, name, spec.top_k)
                figures["top_k_agree"] = float(agree)
                if not agree and not reason:
                    reason = f"{name}: top-{spec.top_k} indices differ"
            result.outputs[name] = figures
            if reason and result.passed:
                result.passed, result.reason = False, reason
        if user_func is not None:
            passed, figure = _call_user(user_func, golden, outputs)
            result.outputs.setdefault("__func__", {})["value"] = figure
            if not passed and result.passed:
                result.passed, result.reason = False, f"{spec.check_func} returned fail"
        return result

    return check


def error_arrays(want, got) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Elementwise absolute and relative errors of one tensor, and its summary figures.

    Shared by the checks and the per-layer profile (profile.py), so both report the same
    figures: max/mean abs and rel error, relative L2 error, cosine, NaN/Inf count.
    """
    want = np.asarray(want, np.float64).ravel()
    got = np.asarray(got, np.float64).ravel()
    with np.errstate(all="ignore"):  # inf/nan in candidates are expected and reported
        nonfinite = int(got.size - np.isfinite(got).sum())
        absdiff = np.abs(got - want)
        reldiff = np.nan_to_num(np.where(absdiff == 0, 0.0, absdiff / np.abs(want)), nan=np.inf)
        absdiff = np.nan_to_num(absdiff, nan=np.inf)
        norm_want = float(np.linalg.norm(want))
        if nonfinite:
            rel_l2, cosine = np.inf, 0.0
        else:
            err = float(np.linalg.norm(got - want))
            rel_l2 = err / norm_want if norm_want > 0 else (0.0 if err == 0 else np.inf)
            norm = norm_want * float(np.linalg.norm(got))
            cosine = float(np.dot(want, got) / norm) if norm > 0 else (1.0 if err == 0 else 0.0)
        figures = {
            "max_abs": float(absdiff.max(initial=0.0)),
            "mean_abs": float(absdiff.mean()) if absdiff.size else 0.0,
            "max_rel": float(reldiff.max(initial=0.0)),
            "mean_rel": float(reldiff.mean()) if reldiff.size else 0.0,
            "rel_l2": float(rel_l2),
            "cosine": cosine,
            "nonfinite": nonfinite,
        }
    return absdiff, reldiff, figures


def _per_iteration(spec: CheckSpec, name: str, golden, outputs, pooled: dict):
    """Judge each sample alone, as ``polygraphy run`` does; the pooled figures stay for
    reporting, with the number of failing iterations and the first failure's reason."""
    failed, first = 0, ""
    for i, (g, o) in enumerate(zip(golden, outputs)):
        _, reason = _compare(spec, name, np.asarray(g[name], np.float64).ravel(),
                             np.asarray(o[name], np.float64).ravel())
        if reason:
            failed += 1
            first = first or f"iteration {i}: {reason}"
    pooled["failed_iterations"] = failed
    return pooled, (f"{first} ({failed} of {len(golden)} iterations fail)" if failed else "")


def _compare(spec: CheckSpec, name: str, want: np.ndarray, got: np.ndarray):
    absdiff, reldiff, figures = error_arrays(want, got)
    nonfinite, cosine = figures["nonfinite"], figures["cosine"]
    atol, rtol = spec.tol("atol", name), spec.tol("rtol", name)
    if nonfinite:
        return figures, f"{name}: {nonfinite} NaN/Inf values"
    stat = spec.stat_of(name)
    if stat == "elemwise":
        bad = int(((absdiff > atol) & (reldiff > rtol)).sum())
        figures["mismatched"] = bad
        if bad:
            return figures, f"{name}: {bad} elements exceed atol {atol:g} and rtol {rtol:g}"
    else:
        a, r = _stat(spec, stat, absdiff), _stat(spec, stat, reldiff)
        figures[f"{stat}_abs"], figures[f"{stat}_rel"] = a, r
        if a > atol and r > rtol:
            return figures, f"{name}: {stat} error {a:.3g} abs / {r:.3g} rel over tolerance"
    if spec.cosine_min is not None and cosine < spec.cosine_min:
        return figures, f"{name}: cosine {cosine:.6f} < {spec.cosine_min}"
    return figures, ""


def _stat(spec: CheckSpec, stat: str, values: np.ndarray) -> float:
    if not values.size:
        return 0.0
    reduce = {"max": np.max, "mean": np.mean, "median": np.median}.get(
        stat, lambda v: np.quantile(v, spec.quantile))
    with np.errstate(all="ignore"):  # relative errors are inf where the golden value is 0
        return float(reduce(values))


def _top_k_agree(golden: list[Feed], outputs: list[Feed], name: str, k: int) -> bool:
    """Same set of top-k indices along the last axis, row by row (order ignored)."""
    for g, o in zip(golden, outputs):
        g2 = np.asarray(g[name]).reshape(-1, np.asarray(g[name]).shape[-1])
        o2 = np.asarray(o[name]).reshape(g2.shape)
        kk = min(k, g2.shape[-1])
        gi = np.sort(np.argsort(-g2, axis=-1, kind="stable")[:, :kk], axis=-1)
        oi = np.sort(np.argsort(-np.nan_to_num(o2, nan=-np.inf), axis=-1, kind="stable")[:, :kk],
                     axis=-1)
        if not np.array_equal(gi, oi):
            return False
    return True


def _call_user(func, golden, outputs) -> tuple[bool, float]:
    """A check function returns a bool, or (bool, figure). In a worker, sys.exit is an error
    verdict of this plan, not a lost worker (which would be retried on every worker)."""
    try:
        value = func(golden, outputs)
    except SystemExit as exc:
        raise RuntimeError(f"check function called sys.exit({exc.code!r})") from None
    return verdict_of(value)


def verdict_of(value) -> tuple[bool, float]:
    """(passed, figure) of what a check function returned; anything but a bool or a
    (bool, number) pair is a TypeError: ``bool("fail")`` would be a silent pass."""
    passed, figure = value if isinstance(value, tuple) and len(value) == 2 else (value, None)
    if not isinstance(passed, (bool, np.bool_)):
        raise TypeError(f"returned {_kind(value)}, not a bool or a (bool, number) pair")
    if figure is None:
        return bool(passed), float("nan")
    if isinstance(figure, (bool, np.bool_)) or not isinstance(figure, (int, float, np.number)):
        raise TypeError(f"returned (bool, {_kind(figure)}), not a (bool, number) pair")
    return bool(passed), float(figure)


def _kind(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return f"{type(value).__name__} {value!r}"[:80]


def refuse_bad_check_func(spec: str, golden: list[Feed]) -> None:
    """Run ``--check-func`` once on golden against golden, in the driver, before the
    search: one that raises, exits, hangs, returns something else than a verdict, or fails
    there can never pass a plan, and would cost a whole search to find out."""
    func = load_user_function(spec, "check")
    file, _, name = spec.partition(":")
    where = f"{file}:{name or 'check'}"
    copy = [{k: np.array(v, copy=True) for k, v in g.items()} for g in golden]
    value = guarded(where, "check function", func, golden, copy)
    try:
        passed, _ = verdict_of(value)
    except TypeError as exc:
        raise InputError(f"{where}: check function {exc}") from None
    if not passed:
        raise InputError(f"{where}: check function fails the golden outputs against "
                         "themselves, so no plan can pass it")


def _fmt_tol(table: tuple[tuple[str, float], ...]) -> str:
    return ",".join(f"{k}:{v:g}" if k else f"{v:g}" for k, v in table)
