"""The inventory of boards (``devices.yaml``): which boards a proxy actor drives over SSH.

Jetson Nano/TX2 (JetPack 4.6, Python 3.6) and Xavier (JetPack 5.1, Python 3.8) cannot
join a Ray 2.60 cluster (DESIGN.md), so a proxy actor on a host drives each one over SSH.
The file names boards, never secrets: a key *file* path, which must be readable by its
owner only (OpenSSH refuses such keys too, later and less clearly). PyYAML comes with Ray.

    boards:
      - name: nano-1            # unique, [A-Za-z0-9_.-]
        kind: nano              # a device kind (distprec devices)
        host: 192.168.1.20
        port: 22                # optional, 22
        user: ubuntu
        key: ~/.ssh/jetson      # private key file, mode 0600 or stricter
        workdir: distprec       # optional, relative to the remote home
        runtime: trt            # optional: ort (default), trt (the tensorrt module, else
                                # trtexec) or trtexec (docs/JETSON.md)
        python: python3         # optional: the board's Python 3.6+ with numpy and
                                # onnxruntime or tensorrt
        known_hosts: ~/.ssh/distprec_known_hosts  # optional: its host keys, trusted on
                                                  # first use (else OpenSSH's own files)
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from distprec.boards.remote_eval import RUNTIMES  # what a board runs plans with
from distprec.devices import KINDS
from distprec.errors import InputError

FIELDS = ("name", "kind", "host", "port", "user", "key", "workdir", "runtime", "python",
          "known_hosts")
REQUIRED = ("name", "kind", "host", "user", "key")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_HOST = re.compile(r"^[A-Za-z0-9_.:%-]+$")  # no spaces, no option-like text reaches ssh
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_PATH = re.compile(r"^[A-Za-z0-9_./~+-]+$")  # quoted anyway; this keeps the shell simple


@dataclass(frozen=True)
class Board:
    name: str
    kind: str
    host: str
    user: str
    key: Path
    port: int = 22
    workdir: str = "distprec"
    runtime: str = "ort"
    python: str = "python3"
    known_hosts: Path | None = None

    def ssh_options(self) -> tuple[str, ...]:
        """OpenSSH ``-o`` options this entry asks for (host keys trusted on first use)."""
        if self.known_hosts is None:
            return ()
        return (f"UserKnownHostsFile={self.known_hosts}", "StrictHostKeyChecking=accept-new")

    def __repr__(self) -> str:  # the key path is not a secret, but keep logs short
        return f"Board({self.name}: {self.kind} at {self.user}@{self.host}:{self.port})"


def load_inventory(path: str | os.PathLike) -> list[Board]:
    """The boards of ``path``; InputError (one line naming the problem) on any problem."""
    import yaml

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{where}: no such inventory file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: cannot read it ({exc.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)  # safe_load: no Python objects from a user's file
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{where}: not valid YAML{at}") from None
    if not isinstance(data, dict) or not isinstance(data.get("boards"), list):
        raise InputError(f"{where}: expected a mapping with a list under 'boards'")
    if not data["boards"]:
        raise InputError(f"{where}: 'boards' is empty")
    extra = sorted(set(data) - {"boards"})
    if extra:
        raise InputError(f"{where}: unknown top-level key {extra[0]!r} (only 'boards')")
    boards = [parse_board(entry, f"{where}: board {i + 1}", Path(where).parent)
              for i, entry in enumerate(data["boards"])]
    seen: set[str] = set()
    for b in boards:
        if b.name in seen:
            raise InputError(f"{where}: two boards are named {b.name!r}")
        seen.add(b.name)
    return boards


def parse_board(entry: object, where: str, base: Path = Path(".")) -> Board:
    """One board entry; ``base`` anchors a relative key path (the inventory's folder)."""
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a mapping of {', '.join(REQUIRED)}")
    unknown = sorted(str(k) for k in set(entry) - set(FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    for name in REQUIRED:
        if entry.get(name) in (None, ""):
            raise InputError(f"{where}: missing field {name!r}")
    values = {k: entry[k] for k in FIELDS if k in entry and k != "port"}
    for k, v in values.items():
        if not isinstance(v, str):
            raise InputError(f"{where}: field {k!r} must be text, got {type(v).__name__}")
    name = values["name"]
    where = f"{where} ({name})" if _NAME.match(name) else where
    if not _NAME.match(name):
        raise InputError(f"{where}: name {name!r} may hold only letters, digits, '_', '.', '-'")
    if values["kind"] not in KINDS:
        raise InputError(f"{where}: unknown kind {values['kind']!r} "
                         f"(choose from {', '.join(KINDS)})")
    if not _HOST.match(values["host"]) or values["host"].startswith("-"):
        raise InputError(f"{where}: host {values['host']!r} is not a host name or address")
    if not _USER.match(values["user"]):
        raise InputError(f"{where}: user {values['user']!r} is not a user name")
    port = entry.get("port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InputError(f"{where}: port must be a number from 1 to 65535, got {port!r}")
    runtime = values.get("runtime", "ort")
    if runtime not in RUNTIMES:
        raise InputError(f"{where}: runtime {runtime!r} is not supported on boards "
                         f"(choose from {', '.join(RUNTIMES)})")
    for k in ("workdir", "python"):
        if k in values and (not _PATH.match(values[k]) or values[k].startswith("-")):
            raise InputError(f"{where}: {k} {values[k]!r} may hold only letters, digits and "
                             "_ . / ~ + -")
    key = Path(os.path.expanduser(values["key"]))
    key = key if key.is_absolute() else base / key
    check_key(key, where)
    known = values.get("known_hosts")
    if known is not None:
        known = Path(os.path.expanduser(known))
        known = known if known.is_absolute() else base / known
    return Board(name, values["kind"], values["host"], values["user"], key, port,
                 values.get("workdir", "distprec"), runtime, values.get("python", "python3"),
                 known)


def check_key(key: Path, where: str) -> None:
    """The key file exists, is a regular file, and neither group nor others can read it."""
    try:
        st = key.stat()
    except FileNotFoundError:
        raise InputError(f"{where}: key file {key} does not exist") from None
    except OSError as exc:
        raise InputError(f"{where}: key file {key}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{where}: key file {key} is not a regular file")
    if st.st_mode & 0o077:
        raise InputError(f"{where}: key file {key} is open to group or others (mode "
                         f"{stat.S_IMODE(st.st_mode):04o}): chmod 600 it")
    if not os.access(key, os.R_OK):
        raise InputError(f"{where}: key file {key} cannot be read by this user")
