"""A local Prefect API for one `livedrill run` when the user has none, started before Prefect is imported.

With no PREFECT_API_URL, Prefect starts a temporary server itself, but only when the flow's first API
call needs it: the command then waits, one step after the other, for its own imports (Prefect, the flow,
the stages), for Prefect's server module to be imported in this process (only to launch a child), and
for the child to boot (its imports, the database, the app). Launched here, first thing, the child boots
while this process imports and loads the spec, and this process never imports the server.
benchmarks/drill_overhead.py prints what it saves.

The child is the one Prefect launches for its temporary server (uvicorn with Prefect's app factory and
the same ephemeral-mode settings: no UI, no background services, the same database), on a free loopback port, and it is
ended by its PID when this process exits, after Prefect's own exit handlers have flushed their logs and
events to it (atexit runs handlers last-registered first, and this one is registered before Prefect is
imported).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time

from livedrill.prefect_server import find_running, free_port, server_dir

API_URL_ENV = "PREFECT_API_URL"
STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# What Prefect's own temporary server runs with (prefect.server.api.server.SubprocessASGIServer).
EPHEMERAL_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
# The boot takes seconds; a 50 ms poll adds at most 50 ms to it and costs nothing measurable.
HEALTH_POLL_S = 0.05
# Uvicorn ends within a second of SIGTERM once its requests are done; after this it is killed.
STOP_GRACE_S = 5.0


class LocalPrefectAPI:
    """The API this process's Prefect client is pointed at: a child server of this process, or (process None)
    the long-lived one `livedrill server start` left running, which this process neither waits for nor ends."""

    def __init__(self, process: subprocess.Popen | None, url: str):
        self.process, self.url = process, url

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the API answers its health check; RuntimeError if the child died or timed out."""
        if self.process is None:
            return  # found answering its health check
        import httpx  # here, not at the top: every other command of the command line imports this module

        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=HEALTH_POLL_S * 20) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the local Prefect server exited with code {self.process.returncode}")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the local Prefect server did not answer within {timeout_s:g} s "
                                       f"(set {STARTUP_TIMEOUT_ENV} for a slower machine)")
                time.sleep(HEALTH_POLL_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_local_api() -> LocalPrefectAPI | None:
    """The server `livedrill server start` left running (livedrill.prefect_server), else a child launched now;
    None when the environment names an API or Prefect is already imported (its own settings then decide, and
    Prefect starts its temporary server itself if it needs one).

    Call before Prefect is imported; flows.local_api.adopt then points Prefect at it, unless the user's
    Prefect profile names an API (only visible once Prefect is imported), and then the child is ended.
    """
    if os.environ.get(API_URL_ENV) or "prefect" in sys.modules:
        return None
    running = find_running(server_dir())
    if running is not None:
        return LocalPrefectAPI(None, running.url)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
        env={**os.environ, **EPHEMERAL_ENV}, stdin=subprocess.DEVNULL)
    api = LocalPrefectAPI(process, f"http://127.0.0.1:{port}/api")
    atexit.register(api.stop)
    return api
