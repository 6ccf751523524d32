"""Bounded libvirt calls: connections with keepalive, a timeout around every blocking call, error classes.

libvirt-python calls block the calling thread (they release the GIL). A dead peer is detected by
libvirt's keepalive, which needs an event loop: `ensure_event_loop()` runs the default one in a daemon
thread. On top of that every call the drill makes goes through `call_bounded`, which runs it in a
worker thread and gives up after the budget, so a wedged daemon can never hang a drill.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

import libvirt
from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

# libvirt prints every error to stderr as well as raising it; the drill reports errors itself, once.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class LibvirtTimeouts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connect_s: float = Field(15.0, gt=0, description="Opening a connection to a host")
    call_s: float = Field(10.0, gt=0, description="One libvirt API call (lookup, XML, job stats, abort)")
    keepalive_interval_s: int = Field(5, gt=0, description="virConnectSetKeepAlive interval")
    keepalive_count: int = Field(3, gt=0, description="Unanswered keepalives before the connection is closed")
    poll_interval_s: float = Field(0.25, gt=0, description="Job-stats polling period of the migration monitor")
    settle_s: float = Field(30.0, gt=0, description="Waiting for observed state to become stable after a migration or abort")


class LibvirtCallTimeout(TimeoutError):
    """A libvirt call did not return within its budget (the worker thread is abandoned, not killed)."""


# libvirt error codes that say "try again / the link hiccuped" rather than "this cannot work".
_TRANSIENT_CODES = {
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_OPERATION_TIMEOUT,
    libvirt.VIR_ERR_INTERNAL_ERROR,
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
    libvirt.VIR_ERR_OPERATION_ABORTED,
}
_TRANSIENT_CODES.add(getattr(libvirt, "VIR_ERR_AUTH_UNAVAILABLE", libvirt.VIR_ERR_RPC))


def is_transient(exc: BaseException) -> bool:
    """The one place that classifies errors: True = worth retrying or re-observing, False = permanent."""
    if isinstance(exc, (LibvirtCallTimeout, ConnectionError)):
        return True
    if isinstance(exc, libvirt.libvirtError):
        return exc.get_error_code() in _TRANSIENT_CODES
    return False


def is_no_domain(exc: BaseException) -> bool:
    return isinstance(exc, libvirt.libvirtError) and exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def call_bounded(fn: Callable[..., T], timeout_s: float, what: str, *args: Any) -> T:
    """Runs fn(*args) in a daemon thread; raises LibvirtCallTimeout after timeout_s, or fn's own error."""
    result: dict[str, Any] = {}
    done = threading.Event()

    def worker() -> None:
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller below, re-raised there unchanged
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=worker, name=f"libvirt:{what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise LibvirtCallTimeout(f"libvirt call {what} did not return within {timeout_s:.1f} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


_loop_lock = threading.Lock()
_loop_started = False


def ensure_event_loop() -> None:
    """Starts libvirt's default event loop once per process (keepalive needs it)."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-event-loop", daemon=True).start()
        _loop_started = True


def open_connection(uri: str, timeouts: LibvirtTimeouts) -> libvirt.virConnect:
    """Opens a read-write connection with keepalive, bounded by timeouts.connect_s."""
    ensure_event_loop()
    conn = call_bounded(libvirt.open, timeouts.connect_s, f"open({uri})", uri)
    call_bounded(conn.setKeepAlive, timeouts.call_s, "setKeepAlive", timeouts.keepalive_interval_s, timeouts.keepalive_count)
    return conn


def close_quietly(conn: libvirt.virConnect | None, timeouts: LibvirtTimeouts) -> None:
    """Closes a connection; a dead or wedged peer must not stop the caller from moving on."""
    if conn is None:
        return
    try:
        call_bounded(conn.close, timeouts.call_s, "close")
    except (libvirt.libvirtError, LibvirtCallTimeout):
        pass
