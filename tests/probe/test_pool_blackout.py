"""A live migration's switchover loses packets: the pool must not wait on TCP's retransmission timer.

A real network path (a veth pair into a network namespace this test creates) drops every packet while probes
are sent, as at a switchover, then carries them again. The frozen-process case is tested in test_http1 (requests are
acknowledged by the target's kernel there, so they keep their window slots).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time

import pytest

from livedrill.probe.http1 import Http1Pool, Origin, PoolTiming
from tests.probe.test_http1 import NO_HUNT

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                                  reason="needs root and iproute2 for a network namespace")]
SERVER = """
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("10.231.77.2", 8080)); srv.listen(256)
def serve(conn):
    buf = b""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
        while b"\\r\\n\\r\\n" in buf:
            _, buf = buf.split(b"\\r\\n\\r\\n", 1)
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaced_server():
    ns, host_end, ns_end = f"ldpool{os.getpid()}", f"ldh{os.getpid()}", f"ldn{os.getpid()}"
    _ip("netns", "add", ns)
    server = None
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", ns)
        _ip("addr", "add", "10.231.77.1/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", "10.231.77.2/30", "dev", ns_end)
        _ip("netns", "exec", ns, "ip", "link", "set", ns_end, "up")
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        # without its address the namespace drops what arrives (a switchover loses packets; a link taken
        # down would queue them instead, like a frozen process)
        yield lambda up: _ip("netns", "exec", ns, "ip", "addr", "add" if up else "del", "10.231.77.2/30", "dev", ns_end)
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=10)
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def test_after_a_blackout_the_first_answer_comes_to_a_fresh_probe_not_a_retransmission(namespaced_server):
    set_link = namespaced_server

    async def scenario():
        pool = Http1Pool(Origin("http", "10.231.77.2", 8080), None,
                         PoolTiming(idle_reuse_s=5.0, window_period_s=0.1, undelivered_after_s=0.05, scout_after_s=60.0, scouts_at_most=0, **NO_HUNT), max_connections=64)
        done: list[tuple[float, float]] = []  # (request written, answered)

        async def one():
            conn = await pool.acquire()
            written = time.monotonic()
            try:
                await pool.exchange(conn, "GET", "/", [], None)
            finally:
                pool.release(conn)
            done.append((written, time.monotonic()))

        loop = asyncio.get_running_loop()
        end = loop.time() + 0.35
        while loop.time() < end:  # light load: the window closes to 2
            await one()
            await asyncio.sleep(0.005)
        window = pool.window
        done.clear()
        tasks = []
        set_link(False)  # switchover: packets are lost
        down_until = time.monotonic() + 0.3  # past the first retransmission (200 ms), before the next (600 ms)
        while time.monotonic() < down_until:
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(0.005)
        set_link(True)
        back = time.monotonic()
        after_end = back + 0.1
        while time.monotonic() < after_end:
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(0.005)
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
        pool.close()
        return window, back, done

    window, back, done = asyncio.run(scenario())
    assert window == 2
    first_written, first_answered = min((d for d in done if d[1] >= back), key=lambda d: d[1])
    # the first answer after the path came back went to a request written after it, on a connection of its
    # own: the requests lost at the switchover were still waiting for TCP's retransmission timer (200 ms,
    # then 400 ms), and with them every probe that would have queued behind them
    assert first_written >= back, (first_written - back, first_answered - back)
    assert len(done) == len(set(done)) and all(a >= s for s, a in done)
