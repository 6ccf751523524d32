"""The local Prefect API `livedrill run` starts for itself: it answers, and it ends with the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
# A command's process as livedrill.cli runs it: the API is started before Prefect is imported, used, left at exit.
COMMAND = """
import json, sys
from livedrill.prefect_api import start_local_api
api = start_local_api()
if api is None:
    print(json.dumps(None)); sys.exit(0)
api.wait_ready(120)
import httpx
health = httpx.get(api.url + "/health", timeout=10).json()
print(json.dumps({"pid": api.process.pid, "url": api.url, "health": health}))
"""


def _command(env: dict[str, str]) -> object:
    done = subprocess.run([sys.executable, "-c", COMMAND], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_local_api_answers_and_ends_with_the_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1")
    started = _command(env)
    assert started["health"] is True and started["url"].startswith("http://127.0.0.1:")
    assert not psutil.pid_exists(started["pid"])  # ended (and reaped) by the command at its exit


def test_an_api_named_by_the_environment_is_used_as_it_is():
    env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_API_URL="http://127.0.0.1:9/api")
    assert _command(env) is None
