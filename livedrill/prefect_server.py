"""A long-lived local Prefect server, `livedrill server start | status | stop`, that `livedrill run` uses when it runs.

Without any Prefect API a drill command boots a temporary server for itself, and on a small machine that boot
is most of the command's time around the drill (benchmarks/drill_overhead.py). A server started once, here,
takes that boot out of every later drill, keeps the runs and their artifacts, and serves Prefect's UI.

It is Prefect's own `prefect server start` (API, UI and background services), on a free loopback port, and
beside it the warm drill runner (livedrill.drill_runner), which takes the imports out of each drill as well.
All of their state is in one folder: the database (SQLite under PREFECT_HOME), their logs, the runner's socket,
and `server.json`, which records the PIDs and the URL so that `livedrill run` can find them and `stop` ends
exactly those processes. Several may run at once in different folders. The folder is `--dir`, else $LIVEDRILL_SERVER_DIR, else
~/.livedrill/prefect-server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SERVER_DIR_ENV = "LIVEDRILL_SERVER_DIR"
DEFAULT_SERVER_DIR = Path.home() / ".livedrill" / "prefect-server"
STATE_FILE = "server.json"
LOG_FILE = "server.log"
RUNNER_LOG_FILE = "runner.log"
# Answering /health is all `livedrill run` asks before using a recorded server: a live one answers in
# milliseconds on loopback; one that does not answer within this is treated as not running.
HEALTH_TIMEOUT_S = 0.5
# `prefect server start` stops its services and uvicorn within a few seconds of SIGTERM; then it is killed.
STOP_GRACE_S = 15.0
POLL_S = 0.1
RUNNER_MODULE = "livedrill.drill_runner"


@dataclass(frozen=True)
class RunningServer:
    pid: int
    url: str  # the API, http://127.0.0.1:PORT/api; the UI is at the same address without /api
    runner_pid: int | None = None  # the warm drill runner beside it

    @property
    def ui_url(self) -> str:
        return self.url.removesuffix("/api")


def server_dir(given: str | None = None) -> Path:
    return Path(given or os.environ.get(SERVER_DIR_ENV) or DEFAULT_SERVER_DIR)


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _is_our_process(pid: int) -> bool:
    """The recorded PID still runs `prefect server start` (a PID reused by another program is not ours to end)."""
    cmdline = _cmdline(pid)
    return b"prefect" in cmdline and b"server" in cmdline and b"start" in cmdline


def _is_our_runner(pid: int | None) -> bool:
    return pid is not None and RUNNER_MODULE.encode() in _cmdline(pid)


def _healthy(url: str, timeout_s: float) -> bool:
    import httpx  # here: `livedrill run` imports this module before anything else, and httpx costs 0.1 s

    try:
        return httpx.get(f"{url}/health", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def _recorded(folder: Path) -> RunningServer | None:
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        runner = state.get("runner_pid")
        return RunningServer(pid=int(state["pid"]), url=str(state["url"]),
                             runner_pid=int(runner) if runner is not None else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_running(folder: Path) -> RunningServer | None:
    """The server recorded in `folder` when its process is alive and its API answers; else None."""
    server = _recorded(folder)
    if server is None or not _is_our_process(server.pid) or not _healthy(server.url, HEALTH_TIMEOUT_S):
        return None
    return server


def free_port() -> int:
    """A loopback port free now (several servers and labs may run on one machine: never a fixed one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, startup_timeout_s: float, env: dict[str, str] | None = None) -> tuple[RunningServer, bool]:
    """(the server, True if started now). One already running in `folder` is returned as it is.

    RuntimeError, with the log's last lines, when it exits or does not answer within `startup_timeout_s`.
    """
    running = find_running(folder)
    if running is not None:
        return running, False
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    child_env = {**(env if env is not None else os.environ), "PREFECT_HOME": str(folder.resolve()),
                 "PREFECT_API_URL": url}
    with open(folder / LOG_FILE, "ab") as log:
        # Its own session: a Ctrl-C in the terminal that started it, or that terminal closing, does not end it.
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=child_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningServer(pid=process.pid, url=url)
    _record(folder, server)
    deadline = time.monotonic() + startup_timeout_s
    while not _healthy(url, HEALTH_TIMEOUT_S):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            process.wait()
            (folder / STATE_FILE).unlink(missing_ok=True)
            tail = (folder / LOG_FILE).read_text(errors="replace").splitlines()[-15:]
            why = f"exited with code {process.returncode}" if process.returncode not in (None, -signal.SIGKILL) \
                else f"did not answer within {startup_timeout_s:g} s"
            raise RuntimeError(f"the Prefect server in {folder} {why}; {folder / LOG_FILE} ends:\n" + "\n".join(tail))
        time.sleep(POLL_S)
    server = RunningServer(pid=server.pid, url=url, runner_pid=_start_runner(folder, url, env, deadline))
    _record(folder, server)
    return server, True


def _record(folder: Path, server: RunningServer) -> None:
    (folder / STATE_FILE).write_text(json.dumps({"pid": server.pid, "url": server.url,
                                                 "runner_pid": server.runner_pid}) + "\n")


def _start_runner(folder: Path, url: str, env: dict[str, str] | None, deadline: float) -> int | None:
    """The warm drill runner (livedrill.drill_runner); None, said in its log, if it is not ready by `deadline`:
    drills then run cold, each in its own process."""
    from livedrill.drill_runner import SOCKET_FILE

    runner_env = {k: v for k, v in (env if env is not None else os.environ).items() if k != "PREFECT_API_URL"}
    with open(folder / RUNNER_LOG_FILE, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", RUNNER_MODULE, str(folder.resolve()), url], env=runner_env,
                                   cwd=folder, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    while not (folder / SOCKET_FILE).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            process.wait()
            return None
        time.sleep(POLL_S)
    return process.pid


class DrillsInFlight(Exception):
    """The runner has drills running: ending the server under them would cut their Prefect API mid-drill."""


def drills_in_flight(server: RunningServer) -> list[int]:
    """PIDs of the drill processes the runner forked that are still running (each under a child of the runner)."""
    import psutil

    if not _is_our_runner(server.runner_pid):
        return []
    try:
        waiters = psutil.Process(server.runner_pid).children()
    except psutil.NoSuchProcess:
        return []
    drills = []
    for waiter in waiters:
        try:
            drills += [p.pid for p in waiter.children() if p.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            continue
    return sorted(drills)


def stop_server(folder: Path, force: bool = False) -> RunningServer | None:
    """End the server recorded in `folder` (SIGTERM, then SIGKILL after STOP_GRACE_S); None if none was running.
    DrillsInFlight, and nothing ended, while drills the runner forked still run, unless `force`."""
    server = _recorded(folder)
    if server is None:
        (folder / STATE_FILE).unlink(missing_ok=True)
        return None
    running = drills_in_flight(server)
    if running and not force:
        raise DrillsInFlight(f"{len(running)} drill(s) still running in the runner (pids {running}): stop after "
                             "they end, or force it (each drill then loses its Prefect API mid-drill)")
    (folder / STATE_FILE).unlink(missing_ok=True)
    # The runner first: drills it forked are processes of their own and run on to their seal.
    ended = [_end(server.runner_pid, _is_our_runner), _end(server.pid, _is_our_process)]
    return server if any(ended) else None


def _end(pid: int | None, is_ours) -> bool:
    """SIGTERM `pid` if it is still ours, SIGKILL after STOP_GRACE_S; False if it was not running."""
    if pid is None or not is_ours(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while is_ours(pid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if is_ours(pid):
        os.kill(pid, signal.SIGKILL)
    return True
