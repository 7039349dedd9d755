"""Ray's own lines after start-up go to the run's log file, not over the live view.

The end-to-end case runs ``distprec search`` on a pseudo-terminal (the live view is on), with
a check function that prints to stdout and stderr in the workers and SIGKILLs its own
worker once: what reached the terminal is read back and searched for Ray's lines.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

from planted_helpers import planted_file

from distprec.raylog import FdTail, RayLog, notice

ROOT = Path(__file__).parents[1]

#: as Ray 2.60's error listener gave it when a test SIGKILLed an evaluator actor
DIED = ("A worker died or was killed while executing a task by an unexpected system error. "
        "To troubleshoot the problem, check the logs for the dead worker. Lease ID: 0100 "
        "Worker ID: 7a56 Node ID: 2198 Worker IP address: 192.0.2.2 Worker port: 33529 "
        "Worker PID: 5657 Worker exit type: SYSTEM_ERROR Worker exit detail: Worker "
        "unexpectedly exits with a connection error code 2. End of file. Some common "
        "causes include: (1) the process was killed by the OOM killer")


def test_a_cluster_error_becomes_one_line():
    assert notice(DIED) == ("Ray: A worker died or was killed while executing a task by an "
                            "unexpected system error (pid 5657, SYSTEM_ERROR)")
    assert notice("Task was killed due to the node running low on memory.\nMemory on the "
                  "node was 15 GB") == "Ray: Task was killed due to the node running low on memory"


def test_lines_go_to_the_file_and_errors_also_to_one_line(tmp_path, capfd):
    said: list[str] = []
    log = tmp_path / "r.log"
    with RayLog(log, said.append) as route:
        assert not log.exists()  # nothing written until a line arrives
        import ray._private.worker as worker

        assert worker.print_to_stdstream == route._from_ray  # Ray's printer is ours now
        worker.print_to_stdstream({"pid": 41, "actor_name": "EvaluatorActor", "ip": "10.0.0.2",
                                   "localhost": "10.0.0.1", "is_err": True,
                                   "lines": ["Traceback (most recent call last):", "  boom"]},
                                  ignore_prefix=False)
        worker.print_to_stdstream({"pid": "raylet", "is_err": False, "lines": [DIED]}, False)
        route.engage()  # Ray is up: fd 2 (the C++ core worker's lines) is the log's too
        os.write(2, b"[2026-12-02 04:48:16,623 E 5217 5217] core_worker.cc:2465: Actor\n")
    assert worker.print_to_stdstream is not route._from_ray  # Ray's own printer is back
    text = log.read_text().splitlines()
    assert text[:2] == ["(EvaluatorActor pid=41, ip=10.0.0.2) Traceback (most recent call last):",
                        "(EvaluatorActor pid=41, ip=10.0.0.2)   boom"]
    assert text[2].startswith("(raylet) A worker died") and "core_worker.cc" in text[3]
    assert said == [f"{notice(DIED)}; Ray's lines in {log}"]
    assert capfd.readouterr().err == ""  # none of it reached the terminal
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # fd 2 was given back


def test_nested_tails_each_put_back_what_they_found(capfd):
    """The live view's tail, then the RayLog's once Ray is up: unwound in order."""
    view, ray_lines = [], []
    with FdTail(view.append):
        os.write(2, b"before Ray\n")
        with FdTail(ray_lines.append):
            os.write(2, b"after Ray started\n")
        os.write(2, b"after the log closed\n")
    os.write(2, b"to the terminal\n")
    assert ray_lines == ["after Ray started"]
    assert view == ["before Ray", "after the log closed"]
    assert capfd.readouterr().err == "to the terminal\n"


CHECK = '''
import os, sys, threading

def check(golden, outputs):
    # in a Ray worker, not the driver; on a plan it was sent, not in the switchboard build
    # beside the search (that thread may outlive the search)
    if any("default_worker" in a for a in sys.argv) \\
            and threading.current_thread() is threading.main_thread():
        print("check says hello on stderr", file=sys.stderr, flush=True)
        print("check says hello on stdout", flush=True)
        fd = os.open(COUNT, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, b".")
        calls = os.lseek(fd, 0, os.SEEK_CUR)  # this call's own number: appends are atomic
        os.close(fd)
        if calls == 3:  # a plan of the search (the first two: all-low and all-high)
            os.kill(os.getpid(), 9)
    return True
'''


def _on_a_terminal(argv: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin, stdout and stderr; (exit code, all it
    wrote there, without its escape codes)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100", "LINES": "40",
           "TERM": "xterm-256color"}
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout  # a bound on a hung run, not a speed check
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: every holder of the terminal has closed it
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))  # no styles
    return proc.wait(timeout=30), text


def test_ray_lines_stay_off_the_live_view(tmp_path):
    _, model = planted_file(tmp_path, blocks=4)
    (tmp_path / "check.py").write_text(f"COUNT = {str(tmp_path / 'count')!r}\n" + CHECK)
    code, screen = _on_a_terminal(
        [sys.executable, "-m", "distprec.cli", "search", model, "--device", "cpu",
         "--workers", "2", "--strategy", "bisect", "--samples", "2", "--atol", "0.3",
         "--rtol", "0.03", "--check-func", "check.py:check", "-o", "r.json",
         "--layer-errors", "none"], tmp_path)
    assert code == 0, screen[-3000:]
    assert "╭─ distprec" in screen  # the live view was drawn
    for ray_text in ("(raylet)", "check says hello", "core_worker", "pid=", "Traceback"):
        assert ray_text not in screen, ray_text
    said = [line for line in screen.splitlines() if "Ray: A worker died" in line]
    assert len(said) == 1 and "(pid " in said[0] and "r.log" in said[0], said
    log = (tmp_path / "r.log").read_text()
    assert "(raylet) A worker died or was killed" in log
    assert "check says hello on stderr" in log and "check says hello on stdout" in log
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["passed"] and result["faults"]["lost_workers"]
