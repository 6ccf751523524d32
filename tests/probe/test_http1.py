"""The probe's HTTP/1.1 client: response framing (table tests) and the bounded connection pool against a real server."""

from __future__ import annotations

import asyncio

import pytest

from livedrill.probe.http1 import Http1Pool, Origin, ProbeFailure, parse_response, split_url
from livedrill.probe.series import Outcome

OK_HEAD = b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize(
    "raw, method, eof, expected",
    [
        (OK_HEAD + b"Content-Length: 2\r\n\r\nhi", "GET", False, (200, b"hi", True)),
        (OK_HEAD + b"Content-Length: 5\r\n\r\nhi", "GET", False, None),  # body incomplete
        (OK_HEAD + b"Content-Len", "GET", False, None),  # head incomplete
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n3\r\nyou\r\n0\r\n\r\n", "GET", False, (200, b"hiyou", True)),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n", "GET", False, (200, b"hi", True)),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n", "GET", False, None),
        (OK_HEAD + b"Connection: close\r\n\r\npartial", "GET", False, None),  # close-delimited: wait for EOF
        (OK_HEAD + b"Connection: close\r\n\r\nwhole", "GET", True, (200, b"whole", False)),
        (b"HTTP/1.1 204 No Content\r\n\r\n", "GET", False, (204, b"", True)),
        (OK_HEAD + b"Content-Length: 10\r\n\r\n", "HEAD", False, (200, b"", True)),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", False, (200, b"", False)),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", "GET", False, (200, b"", True)),
    ],
)
def test_parse_response(raw, method, eof, expected):
    parsed = parse_response(bytearray(raw), method, eof)
    if expected is None:
        assert parsed is None
    else:
        assert (parsed.status, parsed.body, parsed.keep_alive) == expected
        assert parsed.consumed == len(raw)


@pytest.mark.parametrize(
    "raw, eof, error",
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", False, ValueError),
        (OK_HEAD + b"no colon here\r\n\r\n", False, ValueError),
        (OK_HEAD + b"Content-Length: 5\r\n\r\nhi", True, ConnectionResetError),
        (b"HTTP/1.1 2", True, ConnectionResetError),
    ],
)
def test_parse_response_rejects(raw, eof, error):
    with pytest.raises(error):
        parse_response(bytearray(raw), "GET", eof)


def test_split_url_keeps_the_txid_placeholder():
    assert split_url("https://gw.bank.example/api/v1/tx/{txid}?trace={txid}") == (
        Origin("https", "gw.bank.example", 443), "/api/v1/tx/{txid}?trace={txid}")
    assert Origin("http", "127.0.0.1", 8080).host_header == "127.0.0.1:8080"


async def _slow_server(delay_s: float, accepted: list):
    async def handle(reader, writer):
        accepted.append(1)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(delay_s)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_pool_caps_connections_and_serves_waiters_in_order():
    async def scenario():
        accepted: list = []
        server = await _slow_server(0.05, accepted)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(Origin("http", "127.0.0.1", port), None, idle_reuse_s=5.0, max_connections=3)
        finished: list[int] = []

        async def one(i: int):
            conn = await pool.acquire()
            try:
                status, body, arrived = await pool.exchange(conn, "GET", "/", [], None)
            finally:
                pool.release(conn)
            finished.append(i)
            return status, body, arrived

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        results = await asyncio.gather(*(one(i) for i in range(9)))
        elapsed = loop.time() - t0
        pool.close()
        server.close()
        await server.wait_closed()
        return accepted, finished, results, elapsed

    accepted, finished, results, elapsed = asyncio.run(scenario())
    assert len(accepted) == 3  # never more connections than the cap
    assert all(r[:2] == (200, b"ok") for r in results)
    assert finished[:3] == [0, 1, 2] and sorted(finished) == list(range(9))
    assert 0.14 <= elapsed < 1.0  # three rounds of 50 ms on three connections


def test_refused_connection_is_a_connect_failure_and_frees_its_slot():
    async def scenario():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = Http1Pool(Origin("http", "127.0.0.1", port), None, idle_reuse_s=5.0, max_connections=1)
        kinds = []
        for _ in range(3):  # with a leaked slot, the second acquire would wait forever
            try:
                async with asyncio.timeout(2):
                    await pool.acquire()
            except ProbeFailure as failure:
                kinds.append(failure.outcome)
        return kinds

    assert asyncio.run(scenario()) == [Outcome.CONNECT] * 3


def test_a_waiter_that_times_out_leaks_nothing():
    async def scenario():
        accepted: list = []
        server = await _slow_server(0.2, accepted)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(Origin("http", "127.0.0.1", port), None, idle_reuse_s=5.0, max_connections=1)

        async def slow_request():
            conn = await pool.acquire()
            try:
                return await pool.exchange(conn, "GET", "/", [], None)
            finally:
                pool.release(conn)

        first = asyncio.create_task(slow_request())
        await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await pool.acquire()
        await first
        async with asyncio.timeout(1):
            conn = await pool.acquire()  # the idle keep-alive connection, not a new one
        pool.release(conn)
        pool.close()
        server.close()
        await server.wait_closed()
        return accepted

    assert len(asyncio.run(scenario())) == 1
