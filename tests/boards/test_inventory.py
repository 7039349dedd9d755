"""devices.yaml: each problem is one InputError line naming the board and the field."""

import os

import pytest

from distprec.boards.inventory import load_inventory
from distprec.errors import InputError


def _key(tmp_path, mode=0o600, name="id_test"):
    key = tmp_path / name
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-material\n")
    os.chmod(key, mode)
    return key


def _write(tmp_path, text):
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    return path


GOOD = """boards:
  - name: nano-1
    kind: nano
    host: 127.0.0.1
    port: 2222
    user: me
    key: id_test
  - name: xavier
    kind: xavier-nx
    host: jetson.local
    user: ubuntu
    key: {abs}
    workdir: work/dp
    python: /usr/bin/python3.8
    runtime: trt
"""


def test_reads_boards_with_defaults_and_relative_keys(tmp_path):
    key = _key(tmp_path)
    boards = load_inventory(_write(tmp_path, GOOD.format(abs=key)))
    assert [(b.name, b.kind, b.port, b.workdir, b.python, b.runtime) for b in boards] == [
        ("nano-1", "nano", 2222, "distprec", "python3", "ort"),
        ("xavier", "xavier-nx", 22, "work/dp", "/usr/bin/python3.8", "trt")]
    assert boards[0].key == key  # relative to the inventory's folder
    assert "secret" not in repr(boards[0])


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("kind: nano", "kind: orin-nanoo"), "board 1 (nano-1): unknown kind"),
    (lambda t: t.replace("    user: me\n", ""), "missing field 'user'"),
    (lambda t: t.replace("port: 2222", "port: 70000"), "port must be a number"),
    (lambda t: t.replace("port: 2222", "port: 22\n    passwd: x"), "unknown field 'passwd'"),
    (lambda t: t.replace("name: xavier", "name: nano-1"), "two boards are named 'nano-1'"),
    (lambda t: t.replace("host: 127.0.0.1", "host: -oProxyCommand=x"), "is not a host name"),
    (lambda t: t.replace("key: id_test", "key: nothere"), "key file"),
    (lambda t: t.replace("runtime: trt", "runtime: tensorflow"),
     "runtime 'tensorflow' is not supported"),
    (lambda t: "boards: [", "not valid YAML at line"),
    (lambda t: "boards: []", "'boards' is empty"),
    (lambda t: "- a\n- b\n", "expected a mapping with a list under 'boards'"),
    (lambda t: "boards:\n  - 3\n", "board 1: expected a mapping"),
    (lambda t: t.replace("user: me", "user: 5"), "field 'user' must be text"),
])
def test_each_problem_is_one_line(tmp_path, edit, message):
    key = _key(tmp_path)
    path = _write(tmp_path, edit(GOOD.format(abs=key)))
    with pytest.raises(InputError) as info:
        load_inventory(path)
    text = str(info.value)
    assert message in text and "\n" not in text and str(path) in text
    assert "secret" not in text


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_key_open_to_others_is_refused(tmp_path, mode):
    key = _key(tmp_path, mode)
    with pytest.raises(InputError, match=r"open to group or others .*chmod 600"):
        load_inventory(_write(tmp_path, GOOD.format(abs=key)))


def test_missing_inventory_file(tmp_path):
    with pytest.raises(InputError, match="no such inventory file"):
        load_inventory(tmp_path / "none.yaml")
