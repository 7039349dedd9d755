"""cluster.yaml against the Ray launcher's own schema and preparation, and its security."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start

ROOT = Path(__file__).parent.parent
TEXT = (ROOT / "cluster.yaml").read_text()
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def aws_variant() -> dict:
    """The commented AWS alternative, uncommented in place of provider and auth."""
    block = re.search(r"^# --- AWS alternative.*?\n(.*?)^# --- end", TEXT, re.S | re.M)
    assert block, "AWS alternative block not found"
    lines = [line[2:] for line in block.group(1).splitlines() if not line.startswith("# #")]
    config = {k: v for k, v in yaml.safe_load(TEXT).items() if k not in ("provider", "auth")}
    return {**config, **yaml.safe_load("\n".join(lines))}


@pytest.mark.parametrize("variant", ["local", "aws"])
def test_valid_for_the_ray_launcher(variant):
    config = yaml.safe_load(TEXT) if variant == "local" else aws_variant()
    jsonschema.validate(config, SCHEMA)  # the file as written
    validate_config(prepare_config(config))  # what `ray up` does before it starts anything


def test_start_commands_advertise_the_kind_with_auth_and_no_dashboard():
    config = yaml.safe_load(TEXT)
    head, workers = config["head_start_ray_commands"], config["worker_start_ray_commands"]
    for commands in (head, workers):
        start = next(c for c in commands if "ray start" in c)
        assert 'NODE_ARGS="$(distprec node-args)" &&' in start and start.endswith("$NODE_ARGS")
        assert "RAY_AUTH_MODE=token" in start and 'RAY_AUTH_TOKEN="$(cat' in start
    assert "--include-dashboard=false" in next(c for c in head if "ray start" in c)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "install -q -e ~/distprec" in " ".join(config["setup_commands"])


def test_nothing_listens_publicly():
    body = "\n".join(line for line in TEXT.splitlines() if not line.lstrip().startswith("#"))
    assert "0.0.0.0" not in body and "dashboard-host" not in body
    assert "ray-client-server-port" not in body and "IpPermissions" not in TEXT


def run_start_command(home: Path, which: str, model_text: bytes):
    """Run a start command in bash as the launcher would, with stand-ins for ray (which
    records its environment and arguments) and distprec (real, on a faked model file)."""
    venv = home / "distprec-venv" / "bin"
    venv.mkdir(parents=True)
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text("tok123")
    (home / "model").write_bytes(model_text)
    log = home / "ray.log"
    (venv / "ray").write_text('#!/bin/bash\nprintf "%s\\n" "$RAY_AUTH_MODE" "$RAY_AUTH_TOKEN" '
                              f'"$@" > {log}\n')
    (venv / "distprec").write_text(f'#!/bin/bash\nexec {sys.executable} -m distprec.cli "$@" '
                                   f"--model-file {home / 'model'}\n")
    for f in venv.iterdir():
        f.chmod(0o755)
    command = next(c for c in yaml.safe_load(TEXT)[which] if "ray start" in c)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "RAY_HEAD_IP": "10.0.0.1"}
    proc = subprocess.run(["bash", "-c", command], env=env, timeout=60, cwd=ROOT,
                          capture_output=True, text=True)
    return proc, (log.read_text().splitlines() if log.exists() else None)


@pytest.mark.parametrize("which", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_start_command_runs_in_bash_and_ray_start_parses_it(tmp_path, which):
    proc, recorded = run_start_command(tmp_path, which, b"NVIDIA Jetson AGX Orin Developer Kit\0")
    assert proc.returncode == 0, proc.stderr
    mode, token, verb, *args = recorded
    assert (mode, token, verb) == ("token", "tok123", "start")
    params = start.make_context("start", args).params  # Ray 2.60's own option parser
    assert params["labels"] == "distprec.device=orin"
    assert json.loads(params["resources"]) == {"distprec_orin": 1}
    assert params["num_gpus"] == 1


def test_start_command_stops_when_node_args_fails(tmp_path):
    proc, recorded = run_start_command(tmp_path, "worker_start_ray_commands",
                                       b"NVIDIA Jetson Mystery Board\0")
    assert proc.returncode != 0 and recorded is None
    assert "unrecognised Jetson model" in proc.stderr
