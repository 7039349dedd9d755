"""A real OpenSSH server on 127.0.0.1 for the board tests: throwaway keys, this user.

Each server is a "board": the runner's Python is this venv's (numpy, onnxruntime), so
the proxy's whole path (control master, file copies, the runner protocol) is exercised.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


class Sshd:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self.key = root / "id_ed25519"
        self.known_hosts = root / "known_hosts"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.user = _user()

    def start(self) -> None:
        """Start sshd; RuntimeError (with sshd's words) when it cannot run here."""
        if not os.path.exists(SSHD):
            raise RuntimeError("no sshd (apt-get install openssh-server)")
        for key, extra in ((self.key, []), (self.root / "host_ed25519", [])):
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key),
                                *extra], check=True, capture_output=True)
        (self.root / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        os.chmod(self.root / "authorized_keys", 0o600)
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation
        self.port = _free_port()
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1",
            f"HostKey {self.root / 'host_ed25519'}", f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "PermitRootLogin prohibit-password", "LogLevel ERROR", "MaxSessions 50",
            "MaxStartups 50", ""]))
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
                raise RuntimeError(f"sshd did not start: {err[-1] if err else 'no message'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("sshd did not listen within 10 s")

    def inventory_entry(self, name: str, kind: str = "nano", workdir: str | None = None) -> str:
        lines = [f"  - name: {name}", f"    kind: {kind}", "    host: 127.0.0.1",
                 f"    port: {self.port}", f"    user: {self.user}", f"    key: {self.key}",
                 f"    python: {sys.executable}",
                 f"    workdir: {workdir or self.root / ('work-' + name)}",
                 f"    known_hosts: {self.known_hosts}"]
        return "\n".join(lines) + "\n"

    def connections(self) -> list[int]:
        """Pids of the per-connection sshd processes this server forked."""
        if self.proc is None:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    out.append(int(entry))
        return out

    def drop_connections(self) -> int:
        """Kill every live connection (the network went away); the server keeps listening."""
        pids = self.connections()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.drop_connections()
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
