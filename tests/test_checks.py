"""Comparison semantics (Polygraphy's CompareFunc.simple) and the extra checks."""

from __future__ import annotations

import numpy as np
import pytest

from distprec.checks import (
    CheckSpec,
    _Golden,
    error_arrays,
    make_check,
    parse_stats,
    parse_tolerances,
    refuse_bad_check_func,
    verdict_of,
)
from distprec.errors import InputError


def run(spec, want, got, name="y"):
    return make_check(spec)([{name: np.asarray(want, np.float32)}],
                            [{name: np.asarray(got, np.float32)}])


def test_elementwise_needs_both_tolerances_exceeded():
    spec = CheckSpec(atol=(("", 0.1),), rtol=(("", 0.01),))
    assert run(spec, [100.0], [100.5])  # abs 0.5 > 0.1 but rel 0.005 <= 0.01
    assert run(spec, [0.01], [0.05])  # rel 4 > 0.01 but abs 0.04 <= 0.1
    result = run(spec, [1.0], [1.5])
    assert not result and "exceed" in result.reason
    assert result.outputs["y"]["max_abs"] == pytest.approx(0.5)


def test_nan_and_inf_always_fail():
    spec = CheckSpec(atol=(("", 1e9),), rtol=(("", 1e9),))
    assert not run(spec, [1.0, 2.0], [np.nan, 2.0])
    result = run(spec, [1.0], [np.inf])
    assert not result and result.outputs["y"]["nonfinite"] == 1


@pytest.mark.parametrize("stat", ["elemwise", "max", "mean", "median", "quantile"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_fail_under_every_statistic(stat, bad):
    # 99 exact values and one non-finite one: the median and 0.5-quantile of the errors
    # are 0, and NaN is dropped by max; only the NaN/Inf rule can fail this output.
    spec = CheckSpec(atol=(("", 1e9),), rtol=(("", 1e9),), stat=stat, quantile=0.5)
    want = np.linspace(1.0, 2.0, 100)
    got = want.copy()
    got[7] = bad
    result = run(spec, want, got)
    assert not result and "NaN/Inf" in result.reason
    assert run(spec, want, want)  # the same output without it passes


@pytest.mark.parametrize("stat, passes", [("max", False), ("mean", True), ("median", True),
                                          ("quantile", False)])
def test_error_statistics(stat, passes):
    want = np.zeros(100)
    got = np.zeros(100)
    got[-3:] = 1.0  # three outliers
    spec = CheckSpec(atol=(("", 0.1),), rtol=(("", 0.0),), stat=stat, quantile=0.99)
    assert bool(run(spec, want, got)) is passes


def test_per_output_tolerances():
    spec = CheckSpec(atol=parse_tolerances("0.01,b:1.0", "--atol", 1e-2),
                     rtol=parse_tolerances("0", "--rtol", 1e-2))
    check = make_check(spec)
    golden = [{"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float32)}]
    assert check(golden, [{"a": np.zeros(2, np.float32), "b": np.full(2, 0.5, np.float32)}])
    assert not check(golden, [{"a": np.full(2, 0.5, np.float32), "b": np.zeros(2, np.float32)}])


def test_cosine_floor_and_top_k():
    want, got = [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]
    loose = (("", 10.0),)
    assert not run(CheckSpec(atol=loose, rtol=loose, cosine_min=0.99), want, got)
    assert not run(CheckSpec(atol=loose, rtol=loose, top_k=1), want, got)
    assert run(CheckSpec(atol=loose, rtol=loose, top_k=3), want, got)  # same set of 3


def test_check_func(tmp_path):
    script = tmp_path / "metric.py"
    script.write_text("import numpy as np\n"
                      "def check(golden, outputs):\n"
                      "    err = float(np.abs(golden[0]['y'] - outputs[0]['y']).max())\n"
                      "    return err < 0.2, err\n")
    spec = CheckSpec(atol=(("", 10.0),), rtol=(("", 10.0),), check_func=f"{script}:check")
    assert run(spec, [1.0], [1.1])
    result = run(spec, [1.0], [1.5])
    assert not result and result.outputs["__func__"]["value"] == pytest.approx(0.5)


@pytest.mark.parametrize("text", ["abc", "-1", "out:nan", "inf"])
def test_bad_tolerances(text):
    with pytest.raises(InputError):
        parse_tolerances(text, "--atol", 1e-2)


def test_a_figure_exactly_at_tolerance_passes_as_in_polygraphy():
    # Polygraphy fails an element only when it exceeds both tolerances (strictly).
    for stat in ("elemwise", "max"):
        assert run(CheckSpec(atol=(("", 0.5),), rtol=(("", 0.0),), stat=stat), [1.0], [1.5])
        assert run(CheckSpec(atol=(("", 0.0),), rtol=(("", 0.5),), stat=stat), [1.0], [1.5])
        assert not run(CheckSpec(atol=(("", 0.49),), rtol=(("", 0.49),), stat=stat),
                       [1.0], [1.5])
    exact = CheckSpec(atol=(("", 0.0),), rtol=(("", 0.0),), cosine_min=1.0)
    assert run(exact, [1.0, 0.0], [1.0, 0.0])  # cosine 1.0 == the minimum
    result = run(CheckSpec(atol=(("", 1.0),), rtol=(("", 1.0),), cosine_min=0.9999),
                 [1.0, 0.0], [1.0, 0.5])
    assert not result and "cosine" in result.reason


def test_relative_l2_and_cosine_figures():
    figures = run(CheckSpec(), [3.0, 4.0], [3.0, 4.5]).outputs["y"]
    assert figures["rel_l2"] == pytest.approx(0.5 / 5.0)
    assert figures["cosine"] == pytest.approx((9 + 18) / (5 * np.hypot(3, 4.5)))
    assert figures["max_abs"] == pytest.approx(0.5) and figures["mean_abs"] == pytest.approx(0.25)
    small = run(CheckSpec(), [0.3, 0.4], [0.3, 0.45]).outputs["y"]  # norms below 1
    assert small["rel_l2"] == pytest.approx(0.1, rel=1e-6)
    assert small["cosine"] == pytest.approx((0.09 + 0.18) / (0.5 * np.hypot(0.3, 0.45)),
                                            rel=1e-6)
    zero = run(CheckSpec(), [0.0, 0.0], [0.0, 0.0]).outputs["y"]
    assert zero["rel_l2"] == 0.0 and zero["cosine"] == 1.0  # equal zeros: no error
    off = run(CheckSpec(), [0.0, 0.0], [0.0, 1.0]).outputs["y"]
    assert off["rel_l2"] == np.inf and off["cosine"] == 0.0


def test_top_k_compares_index_sets_row_by_row():
    spec = CheckSpec(atol=(("", 10.0),), rtol=(("", 10.0),), top_k=2)
    want = [[0.9, 0.1, 0.5, 0.0], [0.0, 0.2, 0.3, 0.8]]
    assert run(spec, want, [[0.6, 0.1, 0.9, 0.0], [0.0, 0.2, 0.7, 0.6]])  # order ignored
    result = run(spec, want, [[0.9, 0.1, 0.5, 0.0], [0.0, 0.9, 0.3, 0.8]])
    assert not result and "top-2 indices differ" in result.reason
    assert result.outputs["y"]["top_k_agree"] == 0.0


def test_describe_names_every_criterion(tmp_path):
    func = tmp_path / "f.py"
    func.write_text("def check(golden, outputs):\n    return True\n")
    spec = CheckSpec(atol=(("", 0.1), ("out", 0.2)), stat="median", cosine_min=0.99, top_k=5,
                     check_func=f"{func}:check")
    assert spec.describe() == (f"atol 0.1,out:0.2, rtol 0.01, median, per iteration "
                               f"(Polygraphy), cosine >= 0.99, "
                               f"top-5 indices, func {func}:check")


def test_check_error_stat_parses_polygraphy_forms():
    assert parse_stats(None) == ("elemwise", ())
    assert parse_stats("mean") == ("mean", ())
    assert parse_stats(["max", "out:median"]) == ("max", (("out", "median"),))
    assert parse_stats("out:quantile,max") == ("max", (("out", "quantile"),))
    with pytest.raises(InputError, match="'avg' is not one of"):
        parse_stats("out:avg")


def test_per_output_statistic_decides_that_output():
    got = np.zeros(100)
    got[-3:] = 1.0  # three outliers: max fails, median passes
    spec = CheckSpec(atol=(("", 0.1),), rtol=(("", 0.0),), stat="max", stats=(("y", "median"),))
    assert run(spec, np.zeros(100), got)
    assert not run(spec, np.zeros(100), got, name="z")


def two_samples(spec, bad_sample):
    """One output over two samples; one sample is off by 0.3 everywhere, the other exact."""
    want = [np.linspace(1.0, 2.0, 10), np.linspace(1.0, 2.0, 10)]
    got = [w.copy() for w in want]
    got[bad_sample] += 0.3
    return make_check(spec)([{"y": w} for w in want], [{"y": g} for g in got])


@pytest.mark.parametrize("bad_sample", [0, 1])
def test_per_iteration_pooling_fails_an_output_that_the_pooled_mean_passes(bad_sample):
    # Mean abs error: 0.3 on the bad sample, 0.15 pooled; atol 0.2 splits them.
    tol = dict(atol=(("", 0.2),), rtol=(("", 0.0),), stat="mean")
    per = two_samples(CheckSpec(**tol, pooling="iteration"), bad_sample)
    assert not per and f"iteration {bad_sample}" in per.reason
    assert "(1 of 2 iterations fails)" in per.reason
    assert per.outputs["y"]["failed_iterations"] == 1
    pooled = two_samples(CheckSpec(**tol, pooling="pooled"), bad_sample)
    assert pooled and "failed_iterations" not in pooled.outputs["y"]


# -- what a --check-func may return (its refusals: test_hostile_inputs.py) ---------------
@pytest.mark.parametrize("value,want", [(True, (True, float("nan"))), (np.bool_(False),
                                        (False, float("nan"))), ((True, 0.5), (True, 0.5)),
                                       ((np.bool_(True), np.float32(2)), (True, 2.0))])
def test_verdicts_a_check_may_return(value, want):
    got = verdict_of(value)
    assert got[0] is want[0] and (got[1] == want[1] or np.isnan(want[1]) and np.isnan(got[1]))


@pytest.mark.parametrize("value", ["fail", 1, None, np.ones(2), (True,), (True, "x"),
                                   (True, 1, 2), ("yes", 1.0), (True, True)])
def test_anything_else_is_not_a_verdict(value):
    with pytest.raises(TypeError):
        verdict_of(value)


@pytest.mark.parametrize("stat", ["elemwise", "max", "median"])
def test_pooled_figures_are_those_of_the_samples_concatenated(stat):
    # Each sample's errors are computed once and the pooled figures combined from their
    # sums: they must be the figures of one tensor holding every sample, zeros, exact
    # values and a relative error against a golden zero included.
    rng = np.random.default_rng(3)
    golden = [{"y": rng.normal(size=40)} for _ in range(3)]
    for g in golden:
        g["y"][::7] = 0.0
    outputs = [{"y": g["y"] + rng.normal(scale=0.1, size=40)} for g in golden]
    outputs[1]["y"][:5] = golden[1]["y"][:5]
    spec = CheckSpec(atol=(("", 0.05),), rtol=(("", 0.05),), stat=stat, pooling="pooled")
    pooled = make_check(spec)(golden, outputs).outputs["y"]
    joined = error_arrays(np.concatenate([g["y"] for g in golden]),
                          np.concatenate([o["y"] for o in outputs]))[2]
    for name, value in joined.items():
        assert pooled[name] == pytest.approx(value, rel=1e-12), name
    assert pooled["max_rel"] == np.finfo(np.float64).max  # x / 0, as np.nan_to_num gives


def test_one_check_judges_against_each_golden_it_is_given():
    # The check caches each golden tensor's float64 form by the array's identity: a new
    # golden must not be judged against the one before.
    check = make_check(CheckSpec(atol=(("", 0.1),), rtol=(("", 0.0),)))
    got = [{"y": np.ones(4, np.float32)}]
    assert check([{"y": np.ones(4, np.float32)}], got)
    assert not check([{"y": np.zeros(4, np.float32)}], got)
    assert check([{"y": np.ones(4, np.float32)}], got)


def test_nonfinite_figures_count_and_saturate_as_before():
    # One NaN and one inf among finite values: counted once each; an infinite error is the
    # largest float and 0/0 no error (np.nan_to_num's rule, as distprec always reported).
    want, got = [0.0, 1.0, 2.0, 3.0], [0.0, np.inf, 2.0, np.nan]
    figures = run(CheckSpec(), want, got).outputs["y"]
    assert figures["nonfinite"] == 2
    assert figures["max_abs"] == np.inf  # the NaN's error
    only_inf = run(CheckSpec(), [0.0, 1.0], [0.0, np.inf]).outputs["y"]
    big = np.finfo(np.float64).max
    assert only_inf["max_abs"] == big and only_inf["max_rel"] == big


def test_golden_tensors_are_converted_once_and_the_cache_is_bounded():
    golden = _Golden()
    array = np.arange(4, dtype=np.float32)
    assert golden(array)[0] is golden(array)[0]  # the same float64 copy, not a new one
    kept = [np.ones(2) for _ in range(300)]  # a caller judging against ever new goldens
    for a in kept:
        golden(a)
    assert len(golden._cache) <= 256


def test_a_check_function_is_tried_on_a_copy_of_golden(tmp_path):
    script = tmp_path / "metric.py"
    script.write_text("def check(golden, outputs):\n"
                      "    outputs[0]['y'][:] = 7.0  # scribbles on what it was given\n"
                      "    return True\n"
                      "def never(golden, outputs):\n"
                      "    return False\n")
    golden = [{"y": np.zeros(3, np.float32)}]
    refuse_bad_check_func(str(script), golden)  # passes: no error, default name "check"
    assert not golden[0]["y"].any()  # the driver's golden outputs are untouched
    with pytest.raises(InputError, match="metric.py:never: check function fails"):
        refuse_bad_check_func(f"{script}:never", golden)
    strict = tmp_path / "strict.py"
    strict.write_text("def check(golden, outputs):\n    return False\n")
    with pytest.raises(InputError, match="strict.py:check: check function fails"):
        refuse_bad_check_func(str(strict), golden)  # no name given: the default is named
