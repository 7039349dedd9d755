"""Ray's own lines once it is up: into the run's log file, one console line for what matters.

After ``ray.init`` three kinds of Ray text reach the driver's terminal:

- the workers' stdout and stderr (a check function's prints, an actor's traceback), which
  Ray forwards when ``log_to_driver`` is on: it was off, so they were lost;
- the cluster's error messages, "(raylet) A worker died or was killed ...", fifteen lines
  each, which Ray's error-listener thread prints whatever ``log_to_driver`` says;
- native lines of the driver's own C++ core worker (``core_worker.cc``) on fd 2.

Printed as they come, they tear the live view (or bury distprec's lines in a plain log).
``RayLog`` writes all of them to one log file (``-o``'s name with ``.log``) and turns each
cluster error message into one line on the console ("Ray: a worker died ... (pid 5657,
SYSTEM_ERROR)"), so that a lost worker is still said where the user looks.

Ray's own route for the first two is ``ray._private.worker.print_to_stdstream``: the
driver's log thread hands it every forwarded batch (through Ray's stdstream dispatcher,
the mechanism Ray Client's log servicer uses) and the error thread calls it directly. Ray
has no public hook (``ray.init(logging_config=...)`` configures Python logging only), so
RayLog stands in for that function while a command runs and puts it back afterwards. On a
Ray release without it, worker lines stay off (``log_to_driver=False``), as before. The
C++ logger writes to fd 2 below Python's reach, so fd 2 is pointed at a file that a thread
tails (``FdTail``) for as long as Ray is up.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

Sink = Callable[[str], None]

#: one-line notices at most per command: the rest are in the log file
MAX_NOTICES = 20
_armed: RayLog | None = None


def armed() -> RayLog | None:
    """The RayLog of the running command, if any (``connect`` asks)."""
    return _armed


class FdTail:
    """Send what is written to a file descriptor (fd 2) to ``sink``, line by line.

    fd 2 is pointed at a temporary file and a thread tails it. A file rather than a pipe:
    Ray daemons started meanwhile inherit fd 2, and a pipe nobody drains would block them.
    Tails nest (the live view's, then a RayLog's once Ray is up) and must unwind in
    order: each puts back the fd 2 it found.
    """

    def __init__(self, sink: Sink, poll_s: float = 0.2, fd: int = 2) -> None:
        self.sink, self.poll_s, self.fd = sink, poll_s, fd
        self._saved: int | None = None
        self._file = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FdTail:
        try:
            sys.__stderr__.flush()
            self._saved = os.dup(self.fd)
        except (OSError, AttributeError, ValueError):
            return self  # no fd 2 to take over (embedded interpreter): nothing to do
        self._file = tempfile.TemporaryFile(mode="w+b")
        os.dup2(self._file.fileno(), self.fd)
        self._thread = threading.Thread(target=self._tail, name="distprec-fd-tail",
                                        daemon=True)
        self._thread.start()
        return self

    def _tail(self) -> None:
        offset, pending = 0, b""
        while True:
            stopping = self._stop.wait(self.poll_s)
            data = os.pread(self._file.fileno(), 1 << 16, offset)
            while data:
                offset += len(data)
                pending += data
                data = os.pread(self._file.fileno(), 1 << 16, offset)
            *lines, pending = pending.split(b"\n")
            if stopping and pending:
                lines, pending = [*lines, pending], b""
            for line in lines:
                text = line.decode(errors="replace").rstrip()
                if text:
                    self.sink(text)
            if stopping:
                return

    def __exit__(self, *exc) -> None:
        if self._saved is None:
            return
        try:
            sys.__stderr__.flush()
        except (AttributeError, ValueError):
            pass
        os.dup2(self._saved, self.fd)
        os.close(self._saved)
        self._saved = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._file.close()


def notice(message: str) -> str:
    """One line for a cluster error message: its first sentence, the worker's pid and exit
    type when Ray names them."""
    text = " ".join(message.split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")
    facts = [f"pid {m.group(1)}" for m in [re.search(r"Worker PID: (\d+)", text)] if m]
    facts += [m.group(1) for m in [re.search(r"Worker exit type: (\w+)", text)] if m]
    first = first if len(first) <= 120 else first[:117] + "..."
    return f"Ray: {first}" + (f" ({', '.join(facts)})" if facts else "")


class RayLog:
    """While a command runs: Ray's lines go to ``path``, its error messages also to
    ``notify`` as one line each.

    Enter it before Ray starts; ``connect`` (actors/pool.py) turns ``log_to_driver`` on
    when one is armed and calls ``engage`` once Ray is up, which takes over fd 2. Nothing
    is written, the file included, until a line arrives: a run refused before Ray starts
    leaves no log.
    """

    def __init__(self, path: str | os.PathLike, notify: Sink | None = None) -> None:
        self.path = Path(path)
        self.notify: Sink = notify or self._to_terminal
        self.notices = 0
        self._closed = False
        self._file: TextIO | None = None
        self._lock = threading.Lock()
        self._tail: FdTail | None = None
        self._original: Callable | None = None

    # -- lifetime -------------------------------------------------------------------------
    def __enter__(self) -> RayLog:
        global _armed
        worker = _ray_worker()
        if worker is not None and hasattr(worker, "print_to_stdstream"):
            self._original = worker.print_to_stdstream
            worker.print_to_stdstream = self._from_ray
        _armed = self
        return self

    def __exit__(self, *exc) -> None:
        global _armed
        if self._tail is not None:
            self._tail.__exit__(None, None, None)
            self._tail = None
        worker = _ray_worker()
        if self._original is not None and worker is not None:
            worker.print_to_stdstream = self._original
        _armed = None
        with self._lock:
            self._closed = True  # a Ray thread still in _from_ray writes nothing more
            if self._file is not None:
                self._file.close()
                self._file = None

    @property
    def forwards_workers(self) -> bool:
        """Whether worker lines can be taken from Ray (then ``log_to_driver`` is on)."""
        return self._original is not None

    def engage(self) -> None:
        """Ray is up: from now on fd 2 (the C++ core worker's lines) goes to the log."""
        if self._tail is None:
            self._tail = FdTail(lambda text: self.write(text))
            self._tail.__enter__()

    def _to_terminal(self, text: str) -> None:
        """The default ``notify``: the stderr that was there before fd 2 was taken over."""
        fd = self._tail._saved if self._tail is not None and self._tail._saved else 2
        os.write(fd, (text + "\n").encode())

    # -- lines ------------------------------------------------------------------------------
    def write(self, line: str) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:  # a full disk: said once, never dropped silently
                self._closed = True
                if self._file is not None:
                    try:
                        self._file.close()
                    except OSError:
                        pass
                    self._file = None
                failed = f"cannot write Ray's lines to {self.path}: {exc.strerror or exc}; " \
                         "further ones are dropped"
            else:
                return
        self.notify(failed)

    def _from_ray(self, data: dict, ignore_prefix: bool = False) -> None:
        """Ray's ``print_to_stdstream(data, ignore_prefix)``: one batch of a worker's lines,
        or a cluster error message (``pid`` "raylet")."""
        pid = data.get("pid")
        lines = data.get("lines", ())
        if pid == "autoscaler":  # its monitor log, as Ray prints it: the events only
            worker = _ray_worker()
            lines = list(worker.filter_autoscaler_events(lines)) \
                if hasattr(worker, "filter_autoscaler_events") else lines
        if pid in ("raylet", "autoscaler"):
            prefix = f"({pid})"
        else:  # Ray's own prefix: (Actor pid=N) and the node's address when not this one
            who = data.get("actor_name") or data.get("task_name") or ""
            ip = data.get("ip")
            prefix = f"({who + ' ' if who else ''}pid={pid}" + \
                (f", ip={ip})" if ip and ip != data.get("localhost") else ")")
        for line in lines:
            self.write(f"{prefix} {line}")
            if pid == "raylet" and self.notices < MAX_NOTICES:
                self.notices += 1
                more = "" if self.notices < MAX_NOTICES else "; further ones only there"
                self.notify(f"{notice(line)}; Ray's lines in {self.path}{more}")


def _ray_worker():
    """Ray's driver-side worker module, where ``print_to_stdstream`` lives (None: no Ray)."""
    try:
        import ray._private.worker as worker
    except ImportError:
        return None
    return worker
