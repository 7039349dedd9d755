"""A watchdog that clears what a local Ray instance leaves once its driver is gone.

When the driver dies by SIGKILL, Ray's dashboard agent and runtime-env agent outlive it
(issue 13), and every run leaves a session folder in /tmp/ray. ``watch`` starts a small
process in its own session (so a terminal's Ctrl-C does not reach it) that waits for the
driver to exit, however it exits, then ends every process whose command line names the
driver's Ray session and removes the session folder. Only for instances distprec started.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def watch(session_dir: str) -> None:
    """Start the watchdog for this process and its local Ray session folder."""
    subprocess.Popen([sys.executable, "-m", "distprec.reaper", str(os.getpid()), session_dir],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _holds(proc: Path, name: str) -> bool:
    """A Ray process that names the session on its command line, or holds a file in its
    folder open (the agents rename themselves ``ray::DashboardAgent`` but keep their logs
    open). A user's ``less`` of a session log is not a Ray process and is left alone."""
    cmd = (proc / "cmdline").read_bytes()
    if not (cmd.startswith(b"ray::") or b"site-packages/ray/" in cmd):
        return False
    if name.encode() in cmd:
        return True
    for fd in (proc / "fd").iterdir():
        try:
            if name in os.readlink(fd):
                return True
        except OSError:
            pass
    return False


def _session_pids(name: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                if _holds(p, name):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def _wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)  # no pid-reuse race
    except (AttributeError, OSError):
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.5)
        return
    select.select([fd], [], [])
    os.close(fd)


def reap(driver: int, session_dir: str, grace: float = 3.0) -> None:
    _wait_for_exit(driver)
    folder = Path(session_dir)
    name = folder.name
    if not folder.name.startswith("session_"):
        return
    deadline = time.time() + grace  # a clean ray.shutdown needs no help
    while _session_pids(name) and time.time() < deadline:
        time.sleep(0.2)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_pids(name):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        time.sleep(0.5)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the driver's end ends it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    reap(int(sys.argv[1]), sys.argv[2])
