"""User code that exits, raises, hangs or returns nonsense: one line, exit 2 (issue 13).

The CLI runs in a subprocess: a ``sys.exit`` in user code would otherwise end it with the
script's own code, which only a real process shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distprec.checks import verdict_of
from distprec.demo import planted_mlp

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("usercode")
    (d / "m.onnx").write_bytes(planted_mlp(blocks=2).model.SerializeToString())
    return d


def _cli(d: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISTPREC_USER_TIMEOUT": "3"}
    return subprocess.run([sys.executable, "-m", "distprec.cli", *args], cwd=d, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _refused(proc, *names: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and len(err.splitlines()) == 1, err
    for name in names:
        assert name in err, err
    return err


LOADERS = {
    "exit0": ("def load(): \n    import sys\n    sys.exit(0)\n", "sys.exit(0)"),
    "exit_on_import": ("import sys\nsys.exit(3)\ndef load():\n    return []\n", "sys.exit(3)"),
    "raises": ("def load():\n    raise ValueError('no data here')\n", "no data here"),
    "raises_midway": ("def load():\n    yield {}\n    raise OSError('disk gone')\n", "disk gone"),
    "hangs": ("import time\ndef load():\n    time.sleep(60)\n    return []\n", "within 3 s"),
    "hangs_on_import": ("import time\ntime.sleep(60)\ndef load():\n    return []\n",
                        "within 3 s"),
}


@pytest.mark.parametrize("case", sorted(LOADERS))
def test_a_bad_loader_is_one_line(model_dir, case):
    d = model_dir / f"loader_{case}"
    d.mkdir()
    body, says = LOADERS[case]
    (d / "loader.py").write_text(body)
    proc = _cli(d, "golden", str(model_dir / "m.onnx"), "-o", "g.npz",
                "--data-loader-script", "loader.py:load")
    err = _refused(proc, "loader.py", says)
    assert "load" in err
    assert sorted(p.name for p in d.iterdir()) == ["loader.py"]  # nothing written


CHECKS = {
    "exit0": ("import sys\ndef check(g, o):\n    sys.exit(0)\n", "sys.exit(0)"),
    "raises": ("def check(g, o):\n    raise KeyError('logits')\n", "KeyError"),
    "hangs": ("import time\ndef check(g, o):\n    time.sleep(60)\n", "within 3 s"),
    "string": ("def check(g, o):\n    return 'fail'\n", "not a bool"),
    "array": ("import numpy as np\ndef check(g, o):\n    return np.ones(3) > 0\n",
              "array of shape (3,)"),
    "bad_figure": ("def check(g, o):\n    return True, 'high'\n", "not a (bool, number)"),
    "never_passes": ("def check(g, o):\n    return False, 1.0\n", "against themselves"),
}


@pytest.mark.parametrize("case", sorted(CHECKS))
def test_a_bad_check_func_is_refused_before_any_plan(model_dir, case):
    d = model_dir / f"check_{case}"
    d.mkdir()
    body, says = CHECKS[case]
    (d / "metric.py").write_text(body)
    proc = _cli(d, "check", str(model_dir / "m.onnx"), "--device", "cpu", "--keep", "",
                "--check-func", "metric.py:check")
    _refused(proc, "metric.py:check", says)
    assert not proc.stdout.strip()  # no verdict was printed
    assert sorted(p.name for p in d.iterdir()) == ["metric.py"]


def test_search_refuses_a_check_that_fails_golden_against_golden(model_dir):
    d = model_dir / "search"
    d.mkdir()
    (d / "metric.py").write_text("def check(g, o):\n    return False\n")
    proc = _cli(d, "search", str(model_dir / "m.onnx"), "--device", "cpu", "--workers", "1",
                "--no-live", "-o", "r.json", "--check-func", "metric.py:check")
    _refused(proc, "metric.py:check", "against themselves")
    assert sorted(p.name for p in d.iterdir()) == ["metric.py"]  # no result, no journal


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
