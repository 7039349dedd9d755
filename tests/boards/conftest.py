"""A real sshd per test module ("a board"), skipped with the reason when it cannot start."""

from __future__ import annotations

import pytest
from board_server import Sshd


def _server(tmp_path_factory, name):
    server = Sshd(tmp_path_factory.mktemp(name))
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot start an OpenSSH server here: {exc}")
    return server


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = _server(tmp_path_factory, "sshd")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sshd2(tmp_path_factory):
    server = _server(tmp_path_factory, "sshd2")
    yield server
    server.stop()
