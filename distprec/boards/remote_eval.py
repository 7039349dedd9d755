"""The board-side runner: one file, Python 3.6+, the standard library, numpy, onnxruntime.

Copied to the board's work directory by the proxy (distprec/boards/proxy.py) and started
over SSH; it never imports distprec. It speaks a small versioned protocol on stdin/stdout:
every message is an 8-byte big-endian length, a UTF-8 JSON header of that length, then the
raw bytes of the arrays the header lists (``"arrays": [{"id", "dtype", "shape"}]``, in
order). No pickle on either side. The verdict is not computed here: outputs go back and the
host's check (distprec/checks.py) decides, so the rules are the same on every device.

Requests (``op``): ``hello`` (versions, board model, pid), ``have`` (which model files,
by SHA-256, are in ``models/``), ``load`` (a session for a hash-checked model file),
``run`` (a session on samples; arrays cached by id across runs when asked to), ``bye``.
Any request may carry ``drop`` (sessions, their model files, cached arrays to free).
Replies carry ``ok``; a failure is ``ok: false`` with one ``error`` line, and the runner
carries on.

Keep this file Python 3.6 syntax: no dataclasses, no walrus, no f-string ``=``.
"""

import hashlib
import json
import os
import struct
import sys
import traceback

PROTOCOL = 1
MODELS = "models"


def read_exact(stream, n):
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            raise EOFError("stream closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(stream, np):
    """(header, {id: array}) of the next message; EOFError at the end of input."""
    (size,) = struct.unpack(">Q", read_exact(stream, 8))
    header = json.loads(read_exact(stream, size).decode("utf-8"))
    arrays = {}
    for spec in header.get("arrays", []):
        dtype = np.dtype(spec["dtype"])
        count = 1
        for d in spec["shape"]:
            count *= int(d)
        raw = read_exact(stream, count * dtype.itemsize)
        arrays[spec["id"]] = np.frombuffer(raw, dtype).reshape(spec["shape"])
    return header, arrays


def write_message(stream, header, arrays=()):
    """``arrays``: (id, array) pairs, written after the header in that order."""
    header = dict(header)
    header["arrays"] = [{"id": k, "dtype": a.dtype.str, "shape": list(a.shape)}
                        for k, a in arrays]
    data = json.dumps(header).encode("utf-8")
    stream.write(struct.pack(">Q", len(data)))
    stream.write(data)
    for _, a in arrays:
        stream.write(a.tobytes())
    stream.flush()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip("\x00 \n")
    except OSError:
        return None


def board_facts(np, ort):
    """What the host shows and checks: versions, and the board model as the kernel says."""
    facts = {"protocol": PROTOCOL, "pid": os.getpid(),
             "python": ".".join(str(v) for v in sys.version_info[:3]), "numpy": np.__version__,
             "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
             "model": read_text("/proc/device-tree/model"),
             "l4t": read_text("/etc/nv_tegra_release"), "cuda": None, "tensorrt": None}
    for path in ("/usr/local/cuda/version.txt", "/usr/local/cuda/version.json"):
        text = read_text(path)
        if text:
            facts["cuda"] = text.splitlines()[0][:80]
            break
    try:
        import tensorrt
        facts["tensorrt"] = tensorrt.__version__
    except Exception:
        pass
    return facts


class Runner:
    def __init__(self, np, ort):
        self.np, self.ort = np, ort
        self.sessions = {}  # id -> (session, output names, sha)
        self.cache = {}  # array id -> array, kept across runs
        self.next_id = 0
        ort.set_default_logger_severity(3)

    def handle(self, header, arrays):
        if "drop" in header:  # the host piggybacks what it no longer holds on any request
            self.drop(header["drop"])
        op = header.get("op")
        if op == "hello":
            return dict(board_facts(self.np, self.ort)), []
        if op == "have":
            return {"have": [s for s in header["files"] if self.path_ok(s)]}, []
        if op == "load":
            return self.load(header), []
        if op == "run":
            return self.run(header, arrays)
        if op == "drop":
            return {}, []
        raise ValueError(f"unknown op {op!r}")

    def drop(self, what):
        """Free sessions, delete model files no live session uses, forget cached arrays."""
        for sid in what.get("sessions", []):
            self.sessions.pop(sid, None)
        live = set(sha for _, _, sha in self.sessions.values())
        for sha in what.get("files", []):
            if sha not in live and os.path.exists(self.path(sha)):
                os.remove(self.path(sha))
        for key in what.get("forget", []):
            self.cache.pop(key, None)

    def path(self, sha):
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"not a SHA-256: {sha!r}")
        return os.path.join(MODELS, sha + ".onnx")

    def path_ok(self, sha):
        return os.path.exists(self.path(sha)) and sha256_file(self.path(sha)) == sha

    def load(self, header):
        sha = header["sha"]
        path = self.path(sha)
        if not os.path.exists(path):
            raise OSError(f"model {sha[:12]} is not on the board")
        if sha256_file(path) != sha:  # a torn or altered copy never runs
            raise OSError(f"model {sha[:12]} does not match its hash")
        opts = self.ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = int(header.get("threads", 0))
        opts.inter_op_num_threads = 1
        if not header.get("fuse", True):
            opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        providers = header.get("providers") or ["CPUExecutionProvider"]
        session = self.ort.InferenceSession(path, opts, providers=providers)
        if providers[0] not in session.get_providers():
            raise RuntimeError(f"{providers[0]} did not load (ONNX Runtime fell back)")
        self.next_id += 1
        names = [o.name for o in session.get_outputs()]
        self.sessions[self.next_id] = (session, names, sha)
        return {"session": self.next_id, "outputs": names}

    def run(self, header, arrays):
        session, names, _ = self.sessions[header["session"]]
        for key in header.get("store", []):
            self.cache[key] = arrays[key]
        out = []
        shapes = []
        for s, sample in enumerate(header["samples"]):
            feed = {}
            for name, key in sample.items():
                feed[name] = arrays[key] if key in arrays else self.cache[key]
            values = session.run(names, feed)
            shapes.append(names)
            for name, value in zip(names, values):
                out.append((str(s) + "/" + name, self.np.ascontiguousarray(value)))
        return {"outputs": shapes}, out


def main():
    # The protocol owns the real stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = sys.stdin.buffer
    if len(sys.argv) > 1:
        os.chdir(sys.argv[1])
    if not os.path.isdir(MODELS):
        os.makedirs(MODELS)
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as exc:
        write_message(out, {"ok": False, "error": f"the board lacks {exc}"})
        return 3
    runner = Runner(np, ort)
    while True:
        try:
            header, arrays = read_message(stdin, np)
        except EOFError:
            return 0
        if header.get("op") == "bye":
            write_message(out, {"ok": True})
            return 0
        try:
            reply, payload = runner.handle(header, arrays)
            reply["ok"] = True
        except Exception as exc:
            traceback.print_exc()
            line = (str(exc).strip().splitlines() or [""])[0][:300]
            reply, payload = {"ok": False, "error": f"{type(exc).__name__}: {line}"}, []
        write_message(out, reply, payload)


if __name__ == "__main__":
    sys.exit(main())
