"""A backend that runs on a board over OpenSSH, behind the same interface as OrtBackend.

The evaluator (distprec/evaluator.py) is unchanged: it builds candidates and the
switchboard on the host, this backend ships each model once (SHA-256 named files in the
board's work directory, checked by the runner before loading), then sends only feeds it
has not sent before and, per plan, the switchboard's mask. Outputs come back and the
host's check decides the verdict, so the rules are the same on every device.

With ``runtime: trt`` (or ``trtexec``) the board runs TensorRT's legacy per-layer path
(JetPack 4.6.1+ and 5.1 ship TensorRT 8.2 and 8.5): the evaluator hands over the FP32 model
carrying the plan (``per_layer``), this backend ships the FP32 model once and, per plan,
only the precision and the kept nodes (named as TensorRT's ONNX parser names them); the
runner builds one engine per plan and caches it on the board. No switchboard there.

Connection: one OpenSSH control master per board (``ControlMaster``/``ControlPersist``):
the runner's session, and each file copy (``cat >`` over a multiplexed session), share
one TCP connection and one authentication. ``ServerAliveInterval`` is the heartbeat: a
board that stops answering ends the connection in about 15 s.

Latency (``--objective latency``): ``time`` sends the runner the host's timing rule
(distprec/latency.Rule) and one sample; the board runs it there, each run waiting for its
device, and returns the seconds of each run, which the host reduces as it does its own.
``deployable()`` is the board as a user deploys a model on it: graph optimisations on,
where the search's sessions may run unfused (the CPU emulation).

Faults: a lost connection is never a verdict. A run whose connection drops is sent again
on a fresh connection (a run is a pure function of model and feeds); when no connection
can be made, ``BoardLost`` (a BaseException, so the evaluator's "a candidate that does not
run is a verdict" handler does not catch it) leaves the actor, which exits so the driver
loop requeues its plans (distprec/actors/loop.py) and Ray restarts it.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import onnx

from distprec.boards import remote_eval
from distprec.boards.inventory import Board
from distprec.candidates.backends.trt_api import LEGACY, TrtApi, check_version
from distprec.candidates.backends.trt_layers import parser_node_name
from distprec.candidates.backends.trt_state import (
    PLAN_KEY,
    PRECISION_KEY,
    ranges_to_cache,
    read_plan,
)
from distprec.candidates.switchboard import PLAN_INPUT
from distprec.data import Feed
from distprec.errors import InputError
from distprec.latency import Rule

RUNNER = "distprec_runner.py"
#: Arrays up to this size go with every run; larger ones are sent once and cached by id.
INLINE_BYTES = 4096
#: Heartbeat: seconds between SSH keep-alives, and how many may go unanswered.
ALIVE_S, ALIVE_MISSES = 5, 3
#: Seconds an idle control master outlives its last session (a killed proxy leaves one).
PERSIST_S = 10


class BoardLost(BaseException):  # noqa: N818 - not an Exception on purpose (module doc)
    """No connection to the board could be made: the plans go back to the queue."""


class RemoteError(RuntimeError):
    """The board ran the request and failed (a model that does not load or run)."""


class SshLink:
    """OpenSSH commands to one board, sharing one control master."""

    def __init__(self, board: Board, options: tuple[str, ...] = (),
                 connect_timeout: float = 10.0) -> None:
        self.board = board
        self._dir = _socket_dir()
        self.control = os.path.join(self._dir, "cm")
        self.options = options
        self.connect_timeout = connect_timeout
        self.workdir = _remote_dir(board.workdir)

    def argv(self, command: str, master: bool = True) -> list[str]:
        b = self.board
        opts = ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", f"ConnectTimeout={int(self.connect_timeout)}",
                "-o", f"ServerAliveInterval={ALIVE_S}",
                "-o", f"ServerAliveCountMax={ALIVE_MISSES}", "-o", "LogLevel=ERROR"]
        if master:
            opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}",
                     "-o", f"ControlPersist={PERSIST_S}"]
        for opt in (*b.ssh_options(), *self.options):
            opts += ["-o", opt]
        return ["ssh", *opts, "-i", str(b.key), "-p", str(b.port), "-l", b.user, b.host,
                "--", command]

    def run(self, command: str, data: bytes = b"", timeout: float = 120.0) -> None:
        """Run ``command`` on the board with ``data`` on its stdin; ConnectionError if not."""
        try:
            done = subprocess.run(self.argv(command), input=data, capture_output=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ConnectionError(f"ssh to {self.board.name} timed out after {timeout:g} s") \
                from None
        if done.returncode != 0:  # never a verdict: the proxy reconnects or gives up
            raise ConnectionError(f"ssh to {self.board.name} failed: "
                               f"{_last_line(done.stderr) or f'exit {done.returncode}'}")

    def copy(self, data: bytes, name: str) -> None:
        """Write ``data`` to ``name`` in the work directory: a part file, then a rename."""
        where = f"{self.workdir}/{name}"
        part = f"{self.workdir}/.{name.replace('/', '_')}.part"
        self.run(f"mkdir -p {shlex.quote(os.path.dirname(where))} && cat > {shlex.quote(part)}"
                 f" && mv -f {shlex.quote(part)} {shlex.quote(where)}", data)

    def start_runner(self, stderr) -> subprocess.Popen:
        wd, py = shlex.quote(self.workdir), shlex.quote(self.board.python)
        command = f"exec {py} -u {wd}/{RUNNER} {wd}"
        return subprocess.Popen(self.argv(command), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)

    def forget_master(self) -> None:
        """Stop the control master (if any) so the next command opens a fresh connection."""
        if os.path.exists(self.control):
            subprocess.run(["ssh", "-o", f"ControlPath={self.control}", "-O", "exit",
                            self.board.host], capture_output=True, timeout=10)
            try:
                os.remove(self.control)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.forget_master()
        except Exception:
            pass
        shutil.rmtree(self._dir, ignore_errors=True)


class RemoteSession:
    """A model loaded on the board; reloaded after a reconnect, dropped when collected."""

    def __init__(self, backend: RemoteBackend, data: bytes, sha: str,
                 plan: dict | None = None, fuse: bool = True) -> None:
        self.data, self.sha = data, sha
        self.plan = plan  # TensorRT: the load request's plan fields (None on ONNX Runtime)
        self.fuse = fuse  # ONNX Runtime: graph optimisations on, again after a reconnect
        self.where = [-1, 0]  # connection generation and session id on that connection
        self.note = ""  # TensorRT: kept nodes it could not pin, pins it fused away
        weakref.finalize(self, backend._release, self.where, sha)  # no reference to self


class RemoteBackend:
    """Loads and runs models on one board (see the module doc); ``OrtBackend``'s interface."""

    def __init__(self, board: Board, options: tuple[str, ...] = (), retries: int = 3,
                 retry_wait: float = 1.0, connect_timeout: float = 10.0,
                 precision: str = "fp16", ranges_json: str | None = None) -> None:
        self.board = board
        self.per_layer = board.runtime != "ort"  # TensorRT's legacy path: FP32 model + plan
        self.precision, self.ranges_json = precision, ranges_json
        self.api: TrtApi | None = None
        self._calibration: str | None = None
        self.link = SshLink(board, options, connect_timeout)
        self.retries, self.retry_wait = retries, retry_wait
        self.proc: subprocess.Popen | None = None
        self._err = tempfile.TemporaryFile()
        self.generation = 0
        self.reconnects = 0
        self.runs = 0
        self.timings = 0  # ``time`` requests answered
        self.facts: dict = {}
        self._present: set[str] = set()  # model files known to be on the board
        self._cached: set[str] = set()  # array ids the runner holds (this connection)
        self._drops: list[tuple[int, int, str]] = []  # (generation, session id, sha)
        self._lock = threading.Lock()
        try:
            self._connect()
            if self.per_layer:
                self.api = self._trt_api()
        except BaseException:
            self.close()  # a refused board keeps no runner, master or socket folder
            raise
        if self.per_layer:
            self.device = self.facts["runtime"]  # trt (the Python module) or trtexec
        else:
            providers = self.facts.get("providers", [])
            self.device = "cuda" if "CUDAExecutionProvider" in providers else "cpu"
        self.emulates = self.device == "cpu"  # the CPU provider computes FP16 in FP32
        self.fuse = True

    # -- the OrtBackend interface ----------------------------------------------------
    def load(self, model: onnx.ModelProto, fuse: bool | None = None) -> RemoteSession:
        """A session on the board; ``fuse`` overrides the backend's (ONNX Runtime)."""
        plan = None
        if self.per_layer:  # every plan ships the same FP32 bytes, and its plan apart
            plan = self._plan_of(model)
            model = _without_plan(model)
        data = model.SerializeToString()
        sha = hashlib.sha256(data).hexdigest()
        fields = self._plan_fields(model, *plan) if plan is not None else None
        session = RemoteSession(self, data, sha, fields, self.fuse if fuse is None else fuse)
        self._with_retries(lambda: self._ensure(session))
        return session

    def run(self, session: RemoteSession, feeds: list[Feed]) -> list[Feed]:
        out = self._with_retries(lambda: self._run(session, feeds))
        self.runs += 1
        return out

    def time(self, session: RemoteSession, feed: Feed, rule: Rule) -> list[float]:
        """Seconds of each timed run of ``session`` on ``feed``, timed on the board by
        ``rule`` (a round trip per run would time SSH, not the model)."""
        reply, _ = self._with_retries(lambda: self._call_session(
            session, {"op": "time", "rule": rule.record()}, [feed]))
        self.timings += 1
        return [float(t) for t in reply["times"]]

    def deployable(self) -> RemoteBackend | DeployedBoard:
        """This board as a user deploys a model on it (Evaluator.deployed): TensorRT
        builds its engines one way only; ONNX Runtime's sessions get graph optimisations."""
        return self if self.per_layer else DeployedBoard(self)

    def device_name(self) -> str:
        where = f"{self.board.kind}:{self.board.name}/{self.device}"
        return f"{where}-{self.api.text}" if self.api is not None else where

    # -- TensorRT on the board ---------------------------------------------------------
    def _trt_api(self) -> TrtApi:
        """The board's TensorRT, refused (one line) where it cannot run this search."""
        try:
            api = check_version(self.facts.get("tensorrt"))
            api.path(self.precision, LEGACY)  # no BF16 before 9, no weak typing from 11
        except InputError as exc:
            raise RuntimeError(f"board {self.board.name}: {exc}") from None
        if self.facts["runtime"] == "trtexec" and not api.precision_flags:
            raise RuntimeError(f"board {self.board.name}: trtexec of TensorRT {api.text} cannot "
                               "pin layers (--layerPrecisions is 8.4 on) and the tensorrt Python "
                               "module is missing (JetPack's python3-libnvinfer)")
        return api

    def _plan_of(self, model: onnx.ModelProto) -> tuple[str | None, list[str]]:
        """(precision, kept nodes) the evaluator attached; (None, []) for the FP32 model."""
        if any(i.name == PLAN_INPUT for i in model.graph.input):
            raise RuntimeError("TensorRT on a board pins layers per engine (the legacy path): "
                               "no switchboard, plans are evaluated as candidates")
        return read_plan(model) or (None, [])

    def _plan_fields(self, base: onnx.ModelProto, precision: str | None,
                     keep: list[str]) -> dict:
        calibration = None
        if precision == "int8":
            if self.ranges_json is None:
                raise RuntimeError("INT8 on TensorRT needs the search's calibration")
            if self._calibration is None:  # TensorRT's cache format, for the board's version
                self._calibration = ranges_to_cache(self.ranges_json, self.api.version).decode()
            calibration = self._calibration
        return plan_request(base, precision, keep, calibration)

    # -- connection ------------------------------------------------------------------
    def _connect(self) -> None:
        """Copy the runner, start it, say hello; RuntimeError when the board is not there."""
        self._stop()
        self.link.copy(Path(remote_eval.__file__).read_bytes(), RUNNER)
        self._err.seek(0)
        self._err.truncate()
        self.proc = self.link.start_runner(self._err)
        self.generation += 1
        self._present.clear()
        self._cached.clear()
        self.facts = self._call({"op": "hello", "runtime": self.board.runtime})[0]
        if self.facts.get("protocol") != remote_eval.PROTOCOL:
            raise RuntimeError(f"board {self.board.name} speaks protocol "
                               f"{self.facts.get('protocol')}, not {remote_eval.PROTOCOL}")
        if not self.facts.get("runtime"):
            raise RuntimeError(f"board {self.board.name}: runtime {self.board.runtime}: "
                               f"{self.facts.get('runtime_error')}")

    def _reconnect(self) -> None:
        last: Exception | None = None
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.retry_wait * attempt)
            try:
                self.link.forget_master()  # a dead master would refuse the next session
                self._connect()
                self.reconnects += 1
                return
            except (RuntimeError, OSError, EOFError) as exc:
                last = exc
        raise BoardLost(f"board {self.board.name} lost: {last}")

    def _with_retries(self, call):
        """``call()``; on a lost connection, reconnect and call again (never a verdict)."""
        with self._lock:
            for _ in range(self.retries):
                try:
                    return call()
                except (BrokenPipeError, EOFError, ConnectionError) as exc:
                    lost = exc
                self._reconnect()
            raise BoardLost(f"board {self.board.name}: connection lost {self.retries} times "
                            f"in one call ({type(lost).__name__})")

    def _call(self, header: dict, arrays: list = ()) -> tuple[dict, dict]:
        if self.proc is None or self.proc.poll() is not None:
            raise EOFError("the runner is not running")
        if self._drops:
            mine = [d for d in self._drops if d[0] == self.generation]
            # a model about to be loaded again keeps its file
            header["drop"] = {"sessions": [sid for _, sid, _ in mine],
                              "files": sorted({sha for *_, sha in mine} - {header.get("sha")})}
            self._present -= set(header["drop"]["files"])
            self._drops.clear()
        try:
            remote_eval.write_message(self.proc.stdin, header, arrays)
            reply, payload = remote_eval.read_message(self.proc.stdout, np)
        except (BrokenPipeError, EOFError, ConnectionError):
            raise
        except (OSError, ValueError) as exc:  # a torn stream: the connection is not usable
            raise EOFError(f"stream broken: {exc}") from None
        if not reply.get("ok"):
            why = reply.get("error") or _last_line(self._stderr())
            raise RemoteError(f"board {self.board.name}: {why}")
        return reply, payload

    def _stderr(self) -> bytes:
        self._err.seek(0)
        return self._err.read()[-4000:]

    def _stop(self) -> None:
        if self.proc is not None:
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def close(self) -> None:
        with self._lock:
            try:
                if self.proc is not None and self.proc.poll() is None:
                    self._call({"op": "bye"})
            except Exception:
                pass
            self._stop()
            self.link.close()

    # -- models and runs -------------------------------------------------------------
    def _ensure(self, session: RemoteSession) -> None:
        """The session is loaded on this connection: its file copied if missing, then loaded."""
        if session.where[0] == self.generation:
            return
        if session.sha not in self._present:
            have = self._call({"op": "have", "files": [session.sha]})[0]["have"]
            if session.sha not in have:
                self.link.copy(session.data, f"{remote_eval.MODELS}/{session.sha}.onnx")
            self._present.add(session.sha)
        if session.plan is not None:
            request = {"op": "load", "sha": session.sha, **session.plan}
        else:
            request = {"op": "load", "sha": session.sha, "fuse": session.fuse, "threads": 0,
                       "providers": self._providers()}
        reply, _ = self._call(request)
        session.where[:] = [self.generation, reply["session"]]
        session.note = reply.get("note", "")

    def _providers(self) -> list[str]:
        if self.device == "cuda":
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _run(self, session: RemoteSession, feeds: list[Feed]) -> list[Feed]:
        reply, payload = self._call_session(session, {"op": "run"}, feeds)
        return [{name: payload[f"{s}/{name}"] for name in names}
                for s, names in enumerate(reply["outputs"])]

    def _call_session(self, session: RemoteSession, request: dict,
                      feeds: list[Feed]) -> tuple[dict, dict]:
        """``request`` on ``session`` (loaded here first) with ``feeds``: arrays the runner
        holds go by id only, the large ones sent are kept there."""
        self._ensure(session)
        arrays: list[tuple[str, np.ndarray]] = []
        store: list[str] = []
        samples: list[dict[str, str]] = []
        sent: set[str] = set()
        for feed in feeds:
            sample = {}
            for name, value in feed.items():
                a = np.asarray(value, order="C")  # 0-d stays 0-d
                key = _array_id(a)
                sample[name] = key
                if key in self._cached or key in sent:
                    continue
                arrays.append((key, a))
                sent.add(key)
                if a.nbytes > INLINE_BYTES:
                    store.append(key)
            samples.append(sample)
        reply, payload = self._call({**request, "session": session.where[1],
                                     "samples": samples, "store": store}, arrays)
        self._cached.update(store)
        session.note = reply.get("note", session.note)  # engines built on the first run
        return reply, payload

    def _release(self, where: list[int], sha: str) -> None:
        """A session was collected: free it on the board with the next request."""
        if where[0] == self.generation:
            self._drops.append((where[0], where[1], sha))


class DeployedBoard:
    """A board's ONNX Runtime as a user deploys a model on it: the same connection and
    runner, sessions with graph optimisations on. The search's sessions run unfused under
    the CPU emulation (OrtBackend.fuse); the deployable file is timed as it would run."""

    def __init__(self, board: RemoteBackend) -> None:
        self.board = board
        self.device, self.per_layer = board.device, False

    def load(self, model: onnx.ModelProto) -> RemoteSession:
        return self.board.load(model, fuse=True)

    def run(self, session: RemoteSession, feeds: list[Feed]) -> list[Feed]:
        return self.board.run(session, feeds)

    def time(self, session: RemoteSession, feed: Feed, rule: Rule) -> list[float]:
        return self.board.time(session, feed, rule)

    def device_name(self) -> str:
        return self.board.device_name()


def _socket_dir() -> str:
    """A private folder for one control socket, named by this process's pid.

    Short (a socket path must fit in 108 bytes) and swept: a proxy killed by Ray never
    cleans up, so folders of processes that are gone are removed here.
    """
    root = Path(tempfile.gettempdir()) / f"distprec-ssh-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    if root.stat().st_uid != os.getuid() or root.stat().st_mode & 0o077:
        raise RuntimeError(f"{root} is not private to this user")
    for old in root.iterdir():
        pid = old.name.split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root)


def plan_request(base: onnx.ModelProto, precision: str | None, keep: list[str],
                 calibration: str | None = None) -> dict:
    """A TensorRT load request's plan: the precision, the kept nodes under the names
    TensorRT's ONNX parser gives them, every node so named (the runner maps layers to
    them), the inputs' dims (-1: dynamic) and, for INT8, the calibration cache's text."""
    names = {n.name: parser_node_name(n) for n in base.graph.node}
    weights = {t.name for t in base.graph.initializer}
    inputs = {vi.name: [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                        for d in vi.type.tensor_type.shape.dim]
              for vi in base.graph.input if vi.name not in weights}
    return {"precision": precision, "keep": sorted(names.get(k, k) for k in keep),
            "nodes": sorted(set(names.values())), "inputs": inputs, "calibration": calibration}


def _without_plan(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without the plan's metadata, the rest sorted: the same bytes for every plan
    of one model, and for the model itself (the warm-up's FP32 run)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    props = sorted((p.key, p.value) for p in out.metadata_props
                   if p.key not in (PLAN_KEY, PRECISION_KEY))
    del out.metadata_props[:]
    for k, v in props:
        out.metadata_props.add(key=k, value=v)
    return out


def _array_id(a: np.ndarray) -> str:
    h = hashlib.sha1(a.data if a.flags.c_contiguous else a.tobytes())
    h.update(f"{a.dtype.str}{a.shape}".encode())
    return h.hexdigest()


def _remote_dir(workdir: str) -> str:
    """Relative to the remote home (where ssh starts) unless absolute; no shell tilde."""
    if workdir in ("~", "~/"):
        return "."
    return workdir[2:] if workdir.startswith("~/") else workdir


def _last_line(data: bytes) -> str:
    lines = [x for x in data.decode("utf-8", "replace").splitlines() if x.strip()]
    return lines[-1].strip()[:300] if lines else ""
