"""Outputs that would land on an input, another output or a device are refused up front.

Each case: exit 2, one line naming the problem, no input changed, nothing written, and
Ray never started (these run in-process, so a started Ray would show).
"""

from __future__ import annotations

import pytest

from distprec.atomic import write_bytes
from distprec.cli import main
from distprec.demo import planted_mlp


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("paths")
    path = d / "m.onnx"
    write_bytes(path, planted_mlp(blocks=2).model.SerializeToString())
    (d / "r.json").write_text("{}")
    return path


CASES = [
    ("search -o model", ["search", "{m}", "-o", "{m}"], "-o {m} is the model input"),
    ("golden -o model", ["golden", "{m}", "-o", "{m}"], "-o {m} is the model input"),
    ("-o is --save-model", ["search", "{m}", "-o", "{d}/x.json", "--save-model", "{d}/x.json"],
     "-o and --save-model are the same file"),
    ("-o is --journal", ["search", "{m}", "-o", "{d}/x.json", "--journal", "{d}/x.json"],
     "-o and --journal are the same file"),
    ("--save-model is the model", ["search", "{m}", "-o", "{d}/x.json", "--save-model", "{m}"],
     "--save-model {m} is the model input"),
    ("--journal is the model", ["search", "{m}", "-o", "{d}/x.json", "--journal", "{m}"],
     "--journal {m} is the model input"),
    ("-o is --golden", ["search", "{m}", "--golden", "{d}/r.json", "-o", "{d}/r.json"],
     "-o {d}/r.json is the --golden input"),
    ("-o is a device", ["search", "{m}", "-o", "/dev/null"],
     "-o /dev/null: exists and is not a regular file"),
    ("report onto its result", ["report", "{d}/r.json", "-o", "{d}/r.json"],
     "-o {d}/r.json is the result input"),
    ("resume without journal", ["search", "{m}", "-o", "{d}/y.json", "--resume"],
     "--resume: no journal at {d}/y.journal.jsonl"),
    ("zero timeout", ["search", "{m}", "--eval-timeout", "0"], "--eval-timeout must be a "
     "positive"),
    ("negative restarts", ["search", "{m}", "--max-restarts", "-1"],
     "--max-restarts must be 0 or more"),
]


@pytest.mark.parametrize("name,argv,message", CASES, ids=[c[0] for c in CASES])
def test_refused_before_any_work(model_file, capsys, name, argv, message):
    import ray

    d = model_file.parent
    before = model_file.read_bytes()
    listing = sorted(p.name for p in d.iterdir())
    fill = {"m": str(model_file), "d": str(d)}
    ray_before = ray.is_initialized()  # the session's Ray, when other tests started it
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.format(**fill) in err, err
    assert model_file.read_bytes() == before
    assert sorted(p.name for p in d.iterdir()) == listing  # nothing written
    assert ray.is_initialized() == ray_before


def _npz(path, **arrays):
    import numpy as np

    np.savez(path, **arrays)
    return path


def test_bad_data_is_refused_before_the_search(ray_session, model_file, tmp_path, capsys):
    """NaN/Inf inputs or golden outputs, and a negative seed: exit 2, one line, no search."""
    import numpy as np

    x = np.random.default_rng(0).random((2, 8, 32), dtype=np.float32)
    x[1, 3, 4] = np.nan
    x[0, 0, 0] = np.inf
    bad_in = _npz(tmp_path / "in.npz", input=x)
    y = np.zeros((1, 8, 10), np.float32)  # one sample
    y[0, 0, 0] = np.nan
    bad_golden = _npz(tmp_path / "golden.npz", logits=y)
    out = tmp_path / "r.json"
    cases = [
        (["--inputs", str(bad_in)], f"{bad_in}: input 'input' holds 2 NaN/Inf value(s)"),
        (["--golden", str(bad_golden)], "golden output 'logits' holds 1 NaN/Inf value(s)"),
        (["--seed", "-1"], "--seed must be 0 or more, got -1"),
    ]
    for extra, message in cases:
        code = main(["search", str(model_file), "--device", "cpu", "--workers", "1",
                     "--no-live", "-o", str(out), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, (extra, err)
        assert not out.exists()
