"""A real Prefect server, a real `livedrill serve`, and a small REST client: what the UI itself talks to.

Every process is started in its own session and stopped by its PID (and the PIDs of its children recorded
before stopping), never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
# A loaded 2-core machine: the server takes 4-11 s to start, a deployed run's subprocess a few seconds.
SERVER_START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 30.0
# A test server runs on SQLite: a write that meets another writer can fail at once with "database is locked"
# (HTTP 503, the transaction rolled back). Clients retry it as the transient error it is; Prefect's own
# clients in the served processes do so through PREFECT_CLIENT_RETRY_EXTRA_CODES.
SERVER_ERROR_RETRIES = 5
SERVER_ERROR_BACKOFF_S = 0.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quiet_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="INFO", PYTHONUNBUFFERED="1", PREFECT_CLIENT_RETRY_EXTRA_CODES="500", **extra)
    return env


def stop_tree(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process, then SIGKILL it and every child it had (listed by PID before signalling)."""
    if process.poll() is not None:
        return
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout_s)
    for child in children:
        try:
            child.wait(timeout=timeout_s)
        except psutil.TimeoutExpired:
            child.kill()
        except psutil.Error:
            pass


@dataclass
class PrefectServer:
    url: str  # .../api
    ui_url: str
    home: Path
    process: subprocess.Popen
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S, transport=RetryServerErrors())

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class RetryServerErrors(httpx.HTTPTransport):
    """Retries a request answered 500/502/503 (see SERVER_ERROR_RETRIES); the last answer is returned as is."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(SERVER_ERROR_RETRIES):
            response = super().handle_request(request)
            if response.status_code not in (500, 502, 503):
                return response
            response.read()
            response.close()
            time.sleep(SERVER_ERROR_BACKOFF_S * (attempt + 1))
        return super().handle_request(request)


def start_server(workdir: Path, database_url: str | None = None) -> PrefectServer:
    home = workdir / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    extra = {"PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
             "PREFECT_UI_STATIC_DIRECTORY": str(home / "ui-static"),
             # Prefect answers a retryable database error (SQLite "database is locked") with 503 and, unless
             # asked, keeps it out of its log: a failed test's server log must say why a request failed.
             "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true"}
    if database_url:
        extra["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    log = workdir / "prefect-server.log"
    process = subprocess.Popen([str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                               env=quiet_env(home, **extra), stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               start_new_session=True, cwd=workdir)
    server = PrefectServer(url=f"http://127.0.0.1:{port}/api", ui_url=f"http://127.0.0.1:{port}", home=home,
                           process=process, log=log)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_tree(process)
    raise RuntimeError(f"prefect server not healthy within {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}")


@dataclass
class Serve:
    process: subprocess.Popen
    log: Path
    specs: list[Path] = field(default_factory=list)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_serve(server: PrefectServer, workdir: Path, specs: list[Path], expect: list[str]) -> Serve:
    """`livedrill serve <specs>` against the server; returns once every expected deployment exists."""
    log = workdir / "livedrill-serve.log"
    home = workdir / "serve-home"
    home.mkdir(exist_ok=True)
    env = quiet_env(home, PREFECT_API_URL=server.url,
                    # Runs are picked up promptly: the runner polls the server this often.
                    PREFECT_RUNNER_POLL_FREQUENCY="2", LIVEDRILL_OPERATOR="pytest")
    process = subprocess.Popen([str(VENV_BIN / "livedrill"), "serve", *map(str, specs)], env=env, cwd=workdir,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    serve = Serve(process, log, specs)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with server.client() as api:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"livedrill serve exited {process.returncode}:\n{serve.log_tail()}")
            if all(api.get(f"/deployments/name/livedrill/{name}").status_code == 200 for name in expect):
                return serve
            time.sleep(0.5)
    stop_tree(process)
    raise RuntimeError(f"deployments {expect} not created within {SERVER_START_TIMEOUT_S} s:\n{serve.log_tail()}")


# ------------------------------------------------------------------ REST helpers (what the UI calls)


def deployment(api: httpx.Client, name: str) -> dict[str, Any]:
    response = api.get(f"/deployments/name/livedrill/{name}")
    response.raise_for_status()
    return response.json()


def create_run(api: httpx.Client, deployment_name: str, request: dict[str, Any]) -> str:
    dep = deployment(api, deployment_name)
    response = api.post(f"/deployments/{dep['id']}/create_flow_run", json={"parameters": {"request": request}})
    response.raise_for_status()
    return response.json()["id"]


def flow_run(api: httpx.Client, run_id: str) -> dict[str, Any]:
    response = api.get(f"/flow_runs/{run_id}")
    response.raise_for_status()
    return response.json()


TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def wait_state(api: httpx.Client, run_id: str, types: set[str], timeout_s: float, serve: Serve | None = None) -> dict:
    deadline = time.monotonic() + timeout_s
    run: dict = {}
    while time.monotonic() < deadline:
        run = flow_run(api, run_id)
        state = run.get("state") or {}
        if state.get("type") in types:
            return run
        if state.get("type") in TERMINAL:
            break
        time.sleep(0.5)
    tail = serve.log_tail() if serve else ""
    raise AssertionError(f"flow run {run_id} is {run.get('state', {}).get('type')}/{run.get('state', {}).get('name')} "
                         f"({(run.get('state') or {}).get('message')}), wanted {types}\n{tail}")


def artifacts(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    response = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    response.raise_for_status()
    return response.json()


def task_runs(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    response = api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}})
    response.raise_for_status()
    return response.json()


def which(name: str) -> str | None:
    return shutil.which(name)
