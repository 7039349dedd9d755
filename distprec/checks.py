"""Pass/fail of candidate outputs against golden ones, with Polygraphy's semantics.

``make_check(spec)`` returns a function ``check(golden, outputs) -> CheckResult``; the
result is truthy on pass and carries per-output figures (as Polygraphy's CompareFunc).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distprec.data import Feed, load_user_function
from distprec.errors import InputError
from distprec.history import count
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
    for item in _items(text, lambda t: t.rpartition(":")[2].lower() in STATS):
        name, _, stat = item.rpartition(":")
        stat = stat.lower()  # MAX or Mean: no two statistics differ by case alone
        if stat not in STATS:
            raise InputError(f"--check-error-stat: {stat!r} is not one of {', '.join(STATS)}")
        if name:
            per[name] = stat
        else:
            default = stat
    return default, tuple(per.items())


def make_check(spec: CheckSpec):
    user_func = load_user_function(spec.check_func, "check") if spec.check_func else None
    wanted = _Golden()

    def check(golden: list[Feed], outputs: list[Feed]) -> CheckResult:
        result = CheckResult(True)
        for name in golden[0]:
            parts = [_Errors(*wanted(g[name]), o[name]) for g, o in zip(golden, outputs)]
            figures, reason = _compare(spec, name, parts)
            if spec.pooling == "iteration" and len(golden) > 1:
                reason = _per_iteration(spec, name, parts, figures)
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


class _Golden:
    """Each golden tensor in float64, with its magnitudes, its zeros and its squared norm,
    made once: a search judges every plan against the same golden outputs, and on an image
    model (candy, 2 samples of 3x720x720) redoing this per plan cost more than the run.
    The cache holds each golden array itself, so an id is never reused while cached."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple] = {}

    def __call__(self, array) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        hit = self._cache.get(id(array))
        if hit is None or hit[0] is not array:
            want = np.asarray(array, np.float64).ravel()
            magnitude = np.abs(want)
            hit = (array, want, magnitude, np.flatnonzero(magnitude == 0), float(want @ want))
            if len(self._cache) >= 256:  # a caller judging against ever new goldens
                self._cache.clear()
            self._cache[id(array)] = hit
        return hit[1:]


_MAX = np.finfo(np.float64).max


class _Errors:
    """One tensor's elementwise errors against golden, and the sums its figures come from:
    the pooled figures of several samples combine their sums, so each sample's errors are
    computed once whether judged pooled, per iteration, or both."""

    def __init__(self, want: np.ndarray, magnitude: np.ndarray, zeros: np.ndarray,
                 want_sq: float, got) -> None:
        got = np.asarray(got, np.float64).ravel()
        self.size, self.want_sq = got.size, want_sq
        with np.errstate(all="ignore"):  # inf/nan in candidates are expected and reported
            self.got_sq, self.dot = float(got @ got), float(want @ got)
            diff = got - want
            self.err_sq = float(diff @ diff)
            # got @ got is finite only where every value is (squares of float32 range and
            # their sum stay far below float64's overflow): the common case skips a pass
            self.nonfinite = 0 if np.isfinite(self.got_sq) else int(
                got.size - np.count_nonzero(np.isfinite(got)))
            self.absdiff = np.abs(diff, out=diff)
            self.reldiff = np.divide(self.absdiff, magnitude)
            # NaN errors become inf, infinite ones the largest float (np.nan_to_num's rule)
            if self.nonfinite:
                self.reldiff[self.absdiff == 0] = 0.0
                np.nan_to_num(self.reldiff, copy=False, nan=np.inf)
                np.nan_to_num(self.absdiff, copy=False, nan=np.inf)
            elif zeros.size:  # 0/0 is no error; x/0 an infinite one
                self.reldiff[zeros] = np.where(self.absdiff[zeros] == 0, 0.0, _MAX)
            # reduced once: per-iteration judging reads them again for the pooled figures
            self.max_abs = float(self.absdiff.max(initial=0.0))
            self.max_rel = float(self.reldiff.max(initial=0.0))
            self.sum_abs, self.sum_rel = float(self.absdiff.sum()), float(self.reldiff.sum())
        self._mismatched: dict[tuple[float, float], int] = {}

    def mismatched(self, atol: float, rtol: float) -> int:
        if (atol, rtol) not in self._mismatched:
            self._mismatched[atol, rtol] = int(np.count_nonzero(
                (self.absdiff > atol) & (self.reldiff > rtol)))
        return self._mismatched[atol, rtol]


def _figures(parts: list[_Errors]) -> dict[str, float]:
    """Max/mean abs and rel error, relative L2 error, cosine, NaN/Inf count, over ``parts``
    together (as over their concatenation)."""
    size = sum(p.size for p in parts)
    nonfinite = sum(p.nonfinite for p in parts)
    want_sq, got_sq = sum(p.want_sq for p in parts), sum(p.got_sq for p in parts)
    if nonfinite:
        rel_l2, cosine = np.inf, 0.0
    else:
        err = float(np.sqrt(sum(p.err_sq for p in parts)))
        norm_want = float(np.sqrt(want_sq))
        rel_l2 = err / norm_want if norm_want > 0 else (0.0 if err == 0 else np.inf)
        norm = norm_want * float(np.sqrt(got_sq))
        cosine = sum(p.dot for p in parts) / norm if norm > 0 else (1.0 if err == 0 else 0.0)
    return {
        "max_abs": max((p.max_abs for p in parts), default=0.0),
        "mean_abs": sum(p.sum_abs for p in parts) / size if size else 0.0,
        "max_rel": max((p.max_rel for p in parts), default=0.0),
        "mean_rel": sum(p.sum_rel for p in parts) / size if size else 0.0,
        "rel_l2": float(rel_l2),
        "cosine": float(cosine),
        "nonfinite": nonfinite,
    }


def error_arrays(want, got) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Elementwise absolute and relative errors of one tensor, and its summary figures.

    Shared by the checks and the per-layer profile (profile.py), so both report the same
    figures: max/mean abs and rel error, relative L2 error, cosine, NaN/Inf count.
    """
    errors = _Errors(*_Golden()(want), got)
    return errors.absdiff, errors.reldiff, _figures([errors])


def _per_iteration(spec: CheckSpec, name: str, parts: list[_Errors], pooled: dict) -> str:
    """Judge each sample alone, as ``polygraphy run`` does; the pooled figures stay for
    reporting, with the number of failing iterations and the first failure's reason."""
    failed, first = 0, ""
    for i, part in enumerate(parts):
        _, reason = _compare(spec, name, [part])
        if reason:
            failed += 1
            first = first or f"iteration {i}: {reason}"
    pooled["failed_iterations"] = failed
    return (f"{first} ({failed} of {len(parts)} iteration{'s' if len(parts) != 1 else ''} "
            f"fail{'s' if failed == 1 else ''})") if failed else ""


def _compare(spec: CheckSpec, name: str, parts: list[_Errors]):
    figures = _figures(parts)
    nonfinite, cosine = figures["nonfinite"], figures["cosine"]
    atol, rtol = spec.tol("atol", name), spec.tol("rtol", name)
    if nonfinite:
        return figures, f"{name}: {count(nonfinite, 'NaN/Inf value')}"
    stat = spec.stat_of(name)
    if stat == "elemwise":
        bad = sum(p.mismatched(atol, rtol) for p in parts)
        figures["mismatched"] = bad
        if bad:
            return figures, (f"{name}: {count(bad, 'element')} exceed{'s' if bad == 1 else ''}"
                             f" both atol {atol:g} and rtol {rtol:g}")
    else:
        a, r = (_stat(spec, stat, np.concatenate([getattr(p, key) for p in parts]))
                for key in ("absdiff", "reldiff"))
        figures[f"{stat}_abs"], figures[f"{stat}_rel"] = a, r
        if a > atol and r > rtol:
            return figures, (f"{name}: {stat} absolute error {a:.3g} over the tolerance "
                             f"{atol:g}, relative error {r:.3g} over the tolerance {rtol:g}")
    if spec.cosine_min is not None and cosine < spec.cosine_min:
        return figures, (f"{name}: cosine similarity {cosine:.6f} under the floor "
                         f"{spec.cosine_min}")
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
