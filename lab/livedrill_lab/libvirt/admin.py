"""Host administration the lab needs (define/start/destroy domains, wait for a daemon), bounded like every call."""

from __future__ import annotations

import time

import libvirt

from livedrill.platforms.libvirt.connection import (
    LibvirtCallTimeout,
    LibvirtTimeouts,
    call_bounded,
    close_quietly,
    is_no_domain,
    open_connection,
)


def wait_for_daemon(uri: str, budget_s: float, timeouts: LibvirtTimeouts) -> str:
    """Waits until the daemon at `uri` answers; returns its libvirt version string. Raises TimeoutError."""
    deadline = time.monotonic() + budget_s
    last_error = "never answered"
    while time.monotonic() < deadline:
        conn = None
        try:
            conn = open_connection(uri, timeouts)
            version = call_bounded(conn.getLibVersion, timeouts.call_s, "getLibVersion")
            return f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"
        except (libvirt.libvirtError, LibvirtCallTimeout) as exc:
            last_error = str(exc)
        finally:
            close_quietly(conn, timeouts)
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    raise TimeoutError(f"libvirt daemon at {uri} did not answer within {budget_s:.0f} s: {last_error}")


def define_and_start(uri: str, domain_xml: str, timeouts: LibvirtTimeouts) -> None:
    """Defines the domain persistently on the host and starts it."""
    conn = open_connection(uri, timeouts)
    try:
        dom = call_bounded(conn.defineXML, timeouts.call_s, "defineXML", domain_xml)
        call_bounded(dom.create, timeouts.call_s, "create")
    finally:
        close_quietly(conn, timeouts)


def remove_all_domains(uri: str, timeouts: LibvirtTimeouts) -> list[str]:
    """Destroys and undefines every domain on the host; returns their names."""
    conn = open_connection(uri, timeouts)
    removed = []
    try:
        for dom in call_bounded(conn.listAllDomains, timeouts.call_s, "listAllDomains"):
            name = dom.name()
            try:
                if call_bounded(dom.isActive, timeouts.call_s, "isActive"):
                    call_bounded(dom.destroy, timeouts.call_s, "destroy")
                if call_bounded(dom.isPersistent, timeouts.call_s, "isPersistent"):
                    call_bounded(dom.undefine, timeouts.call_s, "undefine")
            except libvirt.libvirtError as exc:
                if not is_no_domain(exc):
                    raise
            removed.append(name)
    finally:
        close_quietly(conn, timeouts)
    return removed
