"""A new user's mistakes, one table (issue 13): each is refused with exit code 2 and one
stderr line naming the problem, no traceback, no file written or changed, and Ray never
started.

Every case runs in a fresh copy of one folder of inputs (models, data, scripts, result
files); the folder's files are hashed before and after. Cases run the CLI in this process
(``main``), with ``ray.init`` made to fail the test: a case refused after Ray started
fails. A few run as a real subprocess, where the process's own exit code is the point (user
code calling ``sys.exit``); there a private ``RAY_TMPDIR`` inside the folder would show a
Ray session. Only the cases marked ``RAY`` need a cluster to be refused (its capacity),
and use the session's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from distprec.candidates.backends.trt_api import installed_version
from distprec.cli import main
from distprec.demo import planted_mlp
from distprec.evaluator import Evaluation
from distprec.journal import Journal
from distprec.strategies.base import Verdict

ROOT = Path(__file__).parents[1]
IN, SUB, RAY = "in-process", "subprocess", "needs a cluster"


# -- the folder every case starts from ---------------------------------------------------
def _dynamic_model() -> onnx.ModelProto:
    """x[batch, n] -> MatMul(4x4) -> Relu: it runs only where n is 4, so the 1 that a
    dynamic dimension defaults to fails."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
         helper.make_node("Relu", ["h"], ["y"], name="relu")], "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _nothing_to_search() -> onnx.ModelProto:
    """Only a Shape layer: nothing of it can run in low precision."""
    graph = helper.make_graph([helper.make_node("Shape", ["x"], ["s"], name="shape")], "shape",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("s", TensorProto.INT64, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _bomb(path: Path) -> None:
    """A .npz whose header claims 4 TiB."""
    import io

    from numpy.lib import format as npy

    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                     "shape": (1 << 40,)})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("input.npy", buf.getvalue())


LOADERS = {
    "exits.py": "import sys\ndef load():\n    sys.exit(0)\n",
    "exits_on_import.py": "import sys\nsys.exit(3)\ndef load():\n    return []\n",
    "raises.py": "def load():\n    raise ValueError('no data here')\n",
    "hangs.py": "import time\ndef load():\n    time.sleep(30)\n",
    "hangs_on_import.py": "import time\ntime.sleep(30)\ndef load():\n    return []\n",
    "fails_midway.py": "def load():\n    yield {}\n    raise OSError('disk gone')\n",
    "empty_loader.py": "def load():\n    return []\n",
    "wrong_names.py": "import numpy as np\ndef load():\n    yield {'image': np.zeros((8, 32), "
                      "np.float32)}\n",
}
CHECKS = {
    "check_exits.py": "import sys\ndef check(g, o):\n    sys.exit(0)\n",
    "check_raises.py": "def check(g, o):\n    raise KeyError('logits')\n",
    "check_hangs.py": "import time\ndef check(g, o):\n    time.sleep(30)\n",
    "check_string.py": "def check(g, o):\n    return 'fail'\n",
    "check_array.py": "import numpy as np\ndef check(g, o):\n    return np.ones(3) > 0\n",
    "check_figure.py": "def check(g, o):\n    return True, 'high'\n",
    "check_fails.py": "def check(g, o):\n    return False, 1.0\n",
    "not_python.py": "this is not Python (\n",
}
NAME_FILES = {
    "not_json.json": "{oops",
    "wrong_key.json": json.dumps({"layers": ["a"]}),
    "unknown.txt": "no such layer,really\n",
    "empty.txt": "\n",
    "other_model.json": json.dumps({"high_precision_layers": [], "model_hash": "x"}),
    "numbers.json": json.dumps([1, 2]),
    "not_a_list.json": json.dumps({"high_precision_layers": "blk0/matmul"}),
    "ghost.json": json.dumps(["blk0/matmul", "ghost"]),
}
INVENTORIES = {
    "inv_not_yaml.yaml": "boards: [unclosed\n",
    "inv_kind.yaml": "boards:\n  - {name: a, kind: jetson-nano, host: 127.0.0.1, user: u, "
                     "key: key}\n",
    "inv_loose_key.yaml": "boards:\n  - {name: a, kind: nano, host: 127.0.0.1, user: u, "
                          "key: loose_key}\n",
    "inv_no_key.yaml": "boards:\n  - {name: a, kind: nano, host: 127.0.0.1, user: u, "
                       "key: gone}\n",
    "inv_no_user.yaml": "boards:\n  - {name: a, kind: nano, host: 127.0.0.1, key: key}\n",
    "inv_nano.yaml": "boards:\n  - {name: a, kind: nano, host: 127.0.0.1, user: u, "
                     "key: key}\n",
}


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A folder no one may write to, root included (issue 26), holding a killed search's
    journal; None where this machine cannot make one.

    A 0555 folder stops other users; root writes to it anyway (and rightly: the checks
    try for real), so as root the folder is made immutable (``chattr +i``).
    """
    d = tmp_path_factory.mktemp("readonly")
    journal = Journal(d / "r.journal.jsonl", {"model_hash": "abc"}, resume=False)
    journal.record(Evaluation(frozenset({"l0"}), Verdict.PASS))
    journal.close()
    os.chmod(d, 0o555)
    immutable = False
    if os.geteuid() == 0:
        immutable = subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode == 0
    try:
        (d / "probe").touch()
        (d / "probe").unlink()
        usable = False  # still writable: no way to make it read-only here
    except OSError:
        usable = True
    yield d if usable else None
    if immutable:
        subprocess.run(["chattr", "-i", str(d)], check=True)
    os.chmod(d, 0o755)


@pytest.fixture(scope="module")
def silent_port():
    """A port that takes TCP connections (the kernel's backlog) but never says a word."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def template(tmp_path_factory, read_only) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    if read_only is not None:
        (d / "ro").symlink_to(read_only)  # one shared folder: nothing can change it
    model = planted_mlp(blocks=2).model  # input (8, 32) float32 -> logits (8, 10)
    (d / "m.onnx").write_bytes(model.SerializeToString())
    (d / "m_copy.onnx").write_bytes(model.SerializeToString())
    (d / "corrupt.onnx").write_bytes(b"\x08\x07garbage")
    (d / "truncated.onnx").write_bytes(model.SerializeToString()[:1000])
    (d / "empty.onnx").write_bytes(b"")
    (d / "a_folder.onnx").mkdir()
    (d / "dyn.onnx").write_bytes(_dynamic_model().SerializeToString())
    (d / "shape_only.onnx").write_bytes(_nothing_to_search().SerializeToString())
    onnx.save_model(model, str(d / "ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="ext.weights", size_threshold=0)
    (d / "ext.weights").unlink()  # shipped without its weights
    x = np.random.default_rng(0).random((8, 32), dtype=np.float32)
    np.savez(d / "in.npz", input=x)
    np.savez(d / "wrong_name.npz", image=x)
    np.savez(d / "wrong_dtype.npz", input=x.astype(np.int32))
    np.savez(d / "wrong_shape.npz", input=x[:, :31])
    nan = x.copy()
    nan[3, 4], nan[0, 0] = np.nan, np.inf
    np.savez(d / "nan.npz", input=nan)
    np.savez(d / "objects.npz", input=np.array([{"a": 1}], dtype=object))
    _bomb(d / "bomb.npz")
    (d / "text.npz").write_text("hello")
    y = np.zeros((1, 8, 10), np.float32)  # one sample
    y[0, 0, 0] = np.nan
    np.savez(d / "nan_golden.npz", logits=y)
    np.savez(d / "other_golden.npz", logits=np.zeros((1, 8, 10), np.float32),
             __distprec_model_hash__=np.array("0123"))
    np.savez(d / "wrong_golden.npz", logits=np.zeros((1, 8, 3), np.float32))
    for name, body in {**LOADERS, **CHECKS, **NAME_FILES, **INVENTORIES}.items():
        (d / name).write_text(body)
    (d / "binary.txt").write_bytes(b"\xff\xfe\x00\x01")
    for key, mode in (("key", 0o600), ("loose_key", 0o644)):
        (d / key).write_text("not a real key: never read before Ray\n")
        os.chmod(d / key, mode)
    (d / "result.json").write_text(json.dumps({"history": [{"size": "big"}]}))
    journal = Journal(d / "r.journal.jsonl", {"model_hash": "abc"}, resume=False)
    for i in range(3):  # a killed search's verdicts
        journal.record(Evaluation(frozenset({f"l{i}"}), Verdict.PASS))
    journal.close()
    return d


# -- the table ----------------------------------------------------------------------------
S = ["search", "m.onnx", "--device", "cpu", "--no-live"]  # a search, plain log lines
C = ["check", "m.onnx", "--device", "cpu", "--keep", ""]  # one plan, no Ray at all

CASES = [
    # the model
    ("model missing", ["search", "nothing.onnx"], "model file not found: nothing.onnx"),
    ("model is a folder", ["search", "a_folder.onnx"], "a_folder.onnx is a folder"),
    ("model corrupt", ["search", "corrupt.onnx"], "not a valid ONNX model: corrupt.onnx"),
    ("model truncated", ["search", "truncated.onnx"], "not a valid ONNX model: truncated"),
    ("model empty", ["golden", "empty.onnx", "-o", "g.npz"], "not a valid ONNX model"),
    ("external data missing", ["search", "ext.onnx"], "not a valid ONNX model: ext.onnx"),
    ("nothing to search", ["search", "shape_only.onnx"], "no layer can run in fp16"),
    ("unknown precision", [*S, "--precision", "fp8"], "unknown precision 'fp8'"),
    ("layers of a folder", ["layers", "a_folder.onnx"], "a_folder.onnx is a folder"),
    # outputs on inputs, on each other, on devices and folders
    ("-o is the model", [*S, "-o", "m.onnx"], "-o m.onnx is the model input"),
    ("golden -o is the model", ["golden", "m.onnx", "-o", "m.onnx"], "is the model input"),
    ("-o is --save-model", [*S, "-o", "x.json", "--save-model", "x.json"],
     "-o and --save-model are the same file"),
    ("-o is --journal", [*S, "-o", "x.json", "--journal", "x.json"],
     "-o and --journal are the same file"),
    ("--save-model is the model", [*S, "-o", "x.json", "--save-model", "m.onnx"],
     "--save-model m.onnx is the model input"),
    ("--journal is the model", [*S, "-o", "x.json", "--journal", "m.onnx"],
     "--journal m.onnx is the model input"),
    ("--log is the model", [*S, "-o", "x.json", "--log", "m.onnx"],
     "--log m.onnx is the model input"),
    ("-o is --golden", [*S, "--golden", "in.npz", "-o", "in.npz"], "-o in.npz is the --golden"),
    ("-o is a device", [*S, "-o", "/dev/null"], "-o /dev/null: exists and is not a regular"),
    ("-o is a folder", ["golden", "m.onnx", "-o", "a_folder.onnx"], "is a folder"),
    ("-o in no folder", [*S, "--save-model", "corrupt.onnx/mixed.onnx"],
     "not a writable folder"),
    ("report onto its result", ["report", "result.json", "-o", "result.json"],
     "-o result.json is the result input"),
    ("sweep -o is the model", ["sweep", "m.onnx", "--devices", "cpu", "-o", "m.onnx"],
     "-o m.onnx is the model input"),
    ("a killed search's journal", [*S, "-o", "r.json"], "continue it with --resume"),
    # read-only folders, found before Ray starts, the user's path named (issue 26)
    ("-o in a read-only folder", [*S, "-o", "ro/r.json"],
     "cannot write -o ro/r.json: ro is not a writable folder"),
    ("--journal in a read-only folder", [*S, "-o", "x.json", "--journal", "ro/j.jsonl"],
     "cannot write --journal ro/j.jsonl: ro is not a writable folder"),
    ("--log in a read-only folder", [*S, "-o", "x.json", "--log", "ro/r.log"],
     "cannot write --log ro/r.log: ro is not a writable folder"),
    ("--save-model in a read-only folder", [*S, "-o", "x.json", "--save-model", "ro/m.onnx"],
     "cannot write --save-model ro/m.onnx"),
    ("--report in a read-only folder", [*S, "-o", "x.json", "--report", "ro/r.html"],
     "cannot write --report ro/r.html"),
    ("calibration cache in a read-only folder", [*S, "-o", "x.json", "--precision", "int8",
                                                 "--calibration-cache", "ro/c.json"],
     "cannot write --calibration-cache ro/c.json"),
    ("resume in a read-only folder", [*S, "-o", "x.json", "--journal", "ro/r.journal.jsonl",
                                      "--resume"], "cannot write --journal ro/r.journal.jsonl"),
    ("sweep --log in a read-only folder", ["sweep", "m.onnx", "--devices", "cpu", "-o",
                                           "s.json", "--log", "ro/s.log"],
     "cannot write --log ro/s.log"),
    ("resume without a journal", [*S, "-o", "y.json", "--resume"],
     "--resume: no journal at y.journal.jsonl"),
    ("resume another search", [*S, "-o", "r.json", "--resume"], "journal of another search"),
    # inputs
    ("inputs: wrong name", [*S, "--inputs", "wrong_name.npz"], "the model takes ['input']"),
    ("inputs: wrong dtype", [*S, "--inputs", "wrong_dtype.npz"], "is int32, the model takes"),
    ("inputs: wrong shape", [*S, "--inputs", "wrong_shape.npz"], "has shape 8x31"),
    ("inputs: NaN", [*S, "--inputs", "nan.npz"], "input 'input' holds 2 NaN/Inf value(s)"),
    ("inputs: pickled objects", [*S, "--inputs", "objects.npz"], "Python objects"),
    ("inputs: absurd header", ["golden", "m.onnx", "--inputs", "bomb.npz", "-o", "g.npz"],
     "bomb.npz"),
    ("inputs: not an archive", [*S, "--inputs", "text.npz"], "cannot read"),
    ("inputs: missing", [*S, "--inputs", "gone.npz"], "gone.npz"),
    ("inputs and a loader", [*S, "--inputs", "in.npz", "--data-loader-script", "raises.py:load"],
     "not both"),
    ("negative seed", [*S, "--seed", "-1"], "--seed must be 0 or more, got -1"),
    ("no samples", ["golden", "m.onnx", "-o", "g.npz", "--samples", "0"], "at least 1"),
    ("dynamic without shapes", ["search", "dyn.onnx"], "give their sizes with --input-shapes "
     "x:NxN"),
    ("shapes: zero-sized", ["search", "dyn.onnx", "--input-shapes", "x:0x4"],
     "zero-sized dimension"),
    ("shapes: not a shape", ["search", "dyn.onnx", "--input-shapes", "x:2by4"], "x:2by4"),
    ("shapes: unknown input", ["search", "dyn.onnx", "--input-shapes", "image:2x4"],
     "not a model input"),
    # golden outputs
    ("golden: NaN", [*S, "--golden", "nan_golden.npz"],
     "golden output 'logits' holds 1 NaN/Inf value(s)"),
    ("golden: another model", [*S, "--golden", "other_golden.npz"], "another model"),
    ("golden: wrong shape", [*S, "--golden", "wrong_golden.npz"], "has shape"),
    # the check
    ("atol negative", [*S, "--atol", "-1"], "non-negative"),
    ("rtol not a number", [*S, "--rtol", "abc"], "not a number"),
    ("atol names no output", [*S, "--atol", "nosuch:1e-3"], "not a model output"),
    ("cosine out of range", [*S, "--cosine-min", "5"], "between -1 and 1"),
    ("top-k zero", [*S, "--top-k", "0"], "--top-k must be at least 1"),
    ("quantile out of range", [*S, "--error-quantile", "2"], "--error-quantile must be in"),
    ("unknown statistic", [*S, "--check-error-stat", "avg"], "avg"),
    ("check-func missing", [*S, "--check-func", "gone.py:check"], "script not found: gone.py"),
    ("check-func not Python", [*S, "--check-func", "not_python.py:check"], "not_python.py"),
    ("check-func no such function", [*S, "--check-func", "check_fails.py:metric"],
     "has no function 'metric'"),
    ("check-func raises", [*S, "--check-func", "check_raises.py:check"], "raised KeyError"),
    ("check-func hangs", [*S, "--check-func", "check_hangs.py:check"], "within 1 s"),
    ("check-func says a word", [*S, "--check-func", "check_string.py:check"], "not a bool"),
    ("check-func gives an array", [*S, "--check-func", "check_array.py:check"],
     "array of shape (3,)"),
    ("check-func figure is a word", [*S, "--check-func", "check_figure.py:check"],
     "not a (bool, number)"),
    ("check-func fails golden", [*S, "--check-func", "check_fails.py:check"],
     "against themselves"),
    ("check-func exits", [*S, "--check-func", "check_exits.py:check"], "sys.exit(0)", SUB),
    # data loaders
    ("loader exits", ["golden", "m.onnx", "-o", "g.npz", "--data-loader-script",
                      "exits.py:load"], "exits.py:load: data loader called sys.exit(0)"),
    ("loader exits on import", ["golden", "m.onnx", "-o", "g.npz", "--data-loader-script",
                                "exits_on_import.py:load"], "sys.exit(3)", SUB),
    ("loader raises", [*S, "--data-loader-script", "raises.py:load"], "no data here"),
    ("loader hangs", [*S, "--data-loader-script", "hangs.py:load"], "within 1 s"),
    ("loader hangs on import", [*S, "--data-loader-script", "hangs_on_import.py:load"],
     "importing it did not return within 1 s"),
    ("loader fails midway", [*S, "--data-loader-script", "fails_midway.py:load"],
     "raised OSError: disk gone"),
    ("loader yields nothing", [*S, "--data-loader-script", "empty_loader.py:load"],
     "no samples"),
    ("loader: wrong names", [*S, "--data-loader-script", "wrong_names.py:load"],
     "the model takes ['input']"),
    # strategies and --start
    ("unknown strategy", [*S, "--strategy", "annealing"], "unknown strategy"),
    ("start without minimize", [*S, "--strategy", "bisect", "--start", "unknown.txt"],
     "--start is for --strategy minimize"),
    ("start: not JSON", [*S, "--strategy", "minimize", "--start", "not_json.json"],
     "not JSON"),
    ("start: no names list", [*S, "--strategy", "minimize", "--start", "wrong_key.json"],
     "no high_precision_layers list"),
    ("start: unknown layer", [*S, "--strategy", "minimize", "--start", "unknown.txt"],
     "unknown layer name 'no such layer,really'"),
    ("start: empty", [*S, "--strategy", "minimize", "--start", "empty.txt"],
     "no layer names in it"),
    ("start: binary", [*S, "--strategy", "minimize", "--start", "binary.txt"],
     "not a text file"),
    ("start: another model", [*S, "--strategy", "minimize", "--start", "other_model.json"],
     "another model"),
    ("keep-file: not names", [*C[:-2], "--keep-file", "in.npz"], "not a text file"),
    ("keep-file: numbers", [*C[:-2], "--keep-file", "numbers.json"],
     "no high_precision_layers list"),
    ("keep-file: names not a list", [*C[:-2], "--keep-file", "not_a_list.json"],
     "no high_precision_layers list"),
    ("keep-file: unknown layer", [*C[:-2], "--keep-file", "ghost.json"],
     "unknown layer name 'ghost'"),
    ("keep: unknown layer", [*C[:-1], "no_such_layer"], "unknown layer name"),
    ("keep and keep-file", [*C, "--keep-file", "unknown.txt"], "one of them"),
    ("top zero", [*S, "--strategy", "worst-first", "--top", "0"], "--top must be at least 1"),
    # run settings
    ("workers zero", [*S, "--workers", "0"], "--workers must be at least 1"),
    ("zero eval timeout", [*S, "--eval-timeout", "0"], "--eval-timeout must be a positive"),
    ("negative restarts", [*S, "--max-restarts", "-1"], "--max-restarts must be 0 or more"),
    ("zero wait", [*S, "--wait", "0"], "--wait must be a positive number"),
    ("plans-per-run zero", [*S, "--plans-per-run", "0"], "--plans-per-run must be at least 1"),
    ("unknown backend", [*S, "--backend", "onnx"], "invalid choice"),
    ("build timeout zero", [*C, "--build-timeout", "0"], "--build-timeout must be positive"),
    ("TensorRT on CPU", [*C, "--backend", "trt"], "NVIDIA GPUs only"),
    ("engine without TensorRT", [*S, "--save-engine", "m.engine"],
     "--save-engine needs --backend trt"),
    ("no model given", ["layers"], "arguments are required"),
    # clusters, device kinds and boards
    ("nothing at --address", [*S, "--address", "127.0.0.1:1"], "cannot reach Ray"),
    ("--address that never answers", [*S, "--address", "127.0.0.1:{silent}", "--wait", "2"],
     "did not answer within 2 s"),
    ("unknown device kind", [*S, "--kind", "jetson"], "unknown device kind 'jetson'"),
    ("sweep: unknown kind", ["sweep", "m.onnx", "--devices", "cpu,jetson"],
     "unknown device kind 'jetson'"),
    ("sweep: nothing runs", ["sweep", "m.onnx", "--devices", "nano", "--precision", "int8"],
     "every (device, precision) pair is unsupported"),
    ("inventory missing", [*S, "--inventory", "gone.yaml"], "no such inventory file"),
    ("inventory not YAML", [*S, "--inventory", "inv_not_yaml.yaml"], "not valid YAML"),
    ("inventory: unknown kind", [*S, "--inventory", "inv_kind.yaml"],
     "unknown kind 'jetson-nano'"),
    ("inventory: key open to others", [*S, "--inventory", "inv_loose_key.yaml"],
     "open to group or others"),
    ("inventory: key missing", [*S, "--inventory", "inv_no_key.yaml"], "does not exist"),
    ("inventory: field missing", [*S, "--inventory", "inv_no_user.yaml"],
     "missing field 'user'"),
    ("inventory: no board of kind", [*S, "--inventory", "inv_nano.yaml", "--kind", "tx2"],
     "no board of kind 'tx2'"),
    ("report: malformed result", ["report", "result.json", "-o", "page.html"],
     "history[0].size must be an integer", SUB),
    ("more workers than slots", [*S, "--workers", "64", "--log", "../ray.log"], "more than the",
     RAY),  # the session's Ray may pass on another test's lines: not into this folder
]
if installed_version() is None:
    CASES.append(("TensorRT not installed", ["search", "m.onnx", "--backend", "trt"],
                  "pip install 'distprec[trt]'"))


def _state(folder: Path) -> dict[str, tuple]:
    """Every file under ``folder``: its kind, size, mtime and content hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(folder))] = (stat.S_IFMT(st.st_mode), st.st_size,
                                           st.st_mtime_ns, digest)
    return out


class RayStarted(BaseException):
    """Raised by ``ray.init`` in a case that must be refused before Ray starts."""


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_line(case, template, tmp_path, monkeypatch, capfd, request):
    name, argv, says, *how = case
    how = how[0] if how else IN
    if any(x.startswith("ro/") for x in argv) and request.getfixturevalue("read_only") is None:
        pytest.skip("no read-only folder can be made here (root without chattr)")
    if any("{silent}" in x for x in argv):
        argv = [x.replace("{silent}", str(request.getfixturevalue("silent_port"))) for x in argv]
    d = tmp_path / "case"
    shutil.copytree(template, d, symlinks=True)
    os.chmod(d / "loose_key", 0o644)  # copytree keeps modes; said plainly
    monkeypatch.chdir(d)
    monkeypatch.setenv("DISTPREC_USER_TIMEOUT", "1")
    before = _state(d)
    if how == SUB:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(d / "raytmp")}
        proc = subprocess.run([sys.executable, "-m", "distprec.cli", *argv], cwd=d, env=env,
                              capture_output=True, text=True, timeout=240)
        code, err = proc.returncode, proc.stderr
        assert not (d / "raytmp").exists(), "Ray started"
    else:
        if how == RAY:
            request.getfixturevalue("ray_session")
        else:
            import ray

            def no_ray(*args, **kwargs):
                raise RayStarted(name)

            monkeypatch.setattr(ray, "init", no_ray)
            monkeypatch.setattr(ray, "is_initialized", lambda: False)
        code = main(argv)
        err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and says in lines[0], lines
    assert lines[0].startswith("distprec: error: ") and "Traceback" not in err
    assert _state(d) == before  # nothing written, changed or removed
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
