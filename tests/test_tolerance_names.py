"""Per-output tolerances and statistics for outputs whose names hold commas, colons and
spaces (issue 13), read back by the real polygraphy from the exported flags."""

from __future__ import annotations

import pytest

from distprec.checks import CheckSpec, parse_stats, parse_tolerances
from distprec.errors import InputError
from distprec.exports import polygraphy_check_flags


@pytest.mark.parametrize("given, want", [
    ("0.01,b:1.0", {"": 0.01, "b": 1.0}),
    ("1e-3 out:1e-4", {"": 1e-3, "out": 1e-4}),
    ("a,b:1e-3,c:1e-2", {"": 0.5, "a,b": 1e-3, "c": 1e-2}),
    (["1e-3", "out,1:1e-4", "x y:2", "a:b:3"], {"": 1e-3, "out,1": 1e-4, "x y": 2.0,
                                                "a:b": 3.0}),
])
def test_names_are_kept_whole(given, want):
    assert dict(parse_tolerances(given, "--atol", 0.5)) == want


@pytest.mark.parametrize("bad", ["abc", "-1", "out:nan", "inf", "a,b", ["x y"]])
def test_what_is_no_tolerance_is_refused(bad):
    with pytest.raises(InputError, match="--atol"):
        parse_tolerances(bad, "--atol", 1e-2)


def test_stats_keep_names_whole_and_polygraphy_reads_them_back():
    from polygraphy.tools.args import util as args_util

    stat, stats = parse_stats(["max", "a,b:mean", "c:d:median"])
    assert stat == "max" and dict(stats) == {"a,b": "mean", "c:d": "median"}
    atol = parse_tolerances(["1e-3", "a,b:1e-4"], "--atol", 1e-2)
    flags = polygraphy_check_flags(CheckSpec(atol=atol, stat=stat, stats=stats))
    per = flags[flags.index("--atol") + 1:flags.index("--rtol")]
    assert args_util.parse_arglist_to_dict(per, cast_to=float, allow_empty_key=True) == {
        "": 1e-3, "a,b": 1e-4}
    stat_args = flags[flags.index("--check-error-stat") + 1:]
    assert args_util.parse_arglist_to_dict(stat_args, allow_empty_key=True) == {
        "": "max", "a,b": "mean", "c:d": "median"}
