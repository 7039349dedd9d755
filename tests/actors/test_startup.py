"""An evaluator whose start-up runs user code that hangs is reported as that, naming the
check, not as a cluster with no room (issue 26, item 4)."""

from __future__ import annotations

import time

from distprec.cli import main

#: Quick on golden against itself (the driver's own probe of the check), hangs on any
#: plan's outputs.
HANGS = ("import time\nimport numpy as np\n\n\ndef check(golden, outputs):\n"
         "    if all(np.array_equal(g[k], o[k]) for g, o in zip(golden, outputs) for k in g):\n"
         "        return True\n"
         "    time.sleep(120)\n    return True\n")


def test_a_check_that_hangs_at_start_up_is_named(ray_session, small_planted, tmp_path, capsys):
    """--evaluate switchboard judges its probe plans in the actor's start-up: a check that
    hangs there ran out --wait and was reported as "no node offers {...}"."""
    model = tmp_path / "m.onnx"
    model.write_bytes(small_planted.model.SerializeToString())
    (tmp_path / "hangs.py").write_text(HANGS)
    func = f"{tmp_path / 'hangs.py'}:check"
    t0 = time.perf_counter()
    code = main(["search", str(model), "--device", "cpu", "--workers", "1", "--evaluate",
                 "switchboard", "--check-func", func, "--wait", "3", "--no-live",
                 "-o", str(tmp_path / "r.json")])
    took = time.perf_counter() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and took < 60, (code, took)
    assert err[-1].startswith("distprec: error: evaluator actors were placed but did not "
                              "finish starting within 3 s"), err
    assert func in err[-1] and "no node offers" not in err[-1]
    assert not (tmp_path / "r.json").exists()
