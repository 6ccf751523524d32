"""The probe's HTTP/1.1 client: response framing (table tests) and the bounded connection pool against a real server."""

from __future__ import annotations

import asyncio

import pytest

from livedrill.probe.http1 import (Http1Pool, Origin, PoolTiming, ProbeFailure, ResponseReader, parse_response,
                                   split_url)
from livedrill.probe.threaded import SessionConfig
from livedrill.probe.window import (hunt_give_up_s, hunt_interval_s, may_hunt, may_send, window_after_answer,
                                   window_after_period)
from livedrill.probe.series import Outcome

OK_HEAD = b"HTTP/1.1 200 OK\r\n"
# hunters off: these tests exercise the window, scouts and lost requests on their own
NO_HUNT = dict(hunt_after_s=3600.0, hunt_every_s=3600.0, hunt_give_up_floor_s=0.01, hunt_give_up_rtt_factor=4.0,
               hunt_give_up_ceiling_s=0.2, hunters_at_most=32)


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


SPLIT_CASES = {
    "content-length": OK_HEAD + b"Content-Length: 11\r\n\r\nhello world",
    "chunked with trailer": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
    "no body (204)": b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
}


@pytest.mark.parametrize("raw", SPLIT_CASES.values(), ids=SPLIT_CASES.keys())
@pytest.mark.parametrize("read_size", [1, 2, 3, 7])
def test_response_read_in_pieces_is_the_response_read_at_once(raw, read_size):
    """As the network delivers it: the reader keeps its progress between reads of one growing buffer."""
    whole = parse_response(bytearray(raw), "GET", eof=False)
    reader, buf, parsed = ResponseReader("GET"), bytearray(), None
    for i in range(0, len(raw), read_size):
        assert parsed is None  # complete only with its last byte
        buf += raw[i:i + read_size]
        parsed = reader.read(buf, eof=False)
    assert parsed is not None
    assert (parsed.status, parsed.body, parsed.keep_alive, parsed.consumed) == (
        whole.status, whole.body, whole.keep_alive, len(raw))


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
        pool = Http1Pool(Origin("http", "127.0.0.1", port), None, PoolTiming(idle_reuse_s=5.0, window_period_s=60.0, undelivered_after_s=0.05, scout_after_s=60.0, scouts_at_most=0, **NO_HUNT), max_connections=3)
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
        pool = Http1Pool(Origin("http", "127.0.0.1", port), None, PoolTiming(idle_reuse_s=5.0, window_period_s=60.0, undelivered_after_s=0.05, scout_after_s=60.0, scouts_at_most=0, **NO_HUNT), max_connections=1)
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
        pool = Http1Pool(Origin("http", "127.0.0.1", port), None, PoolTiming(idle_reuse_s=5.0, window_period_s=60.0, undelivered_after_s=0.05, scout_after_s=60.0, scouts_at_most=0, **NO_HUNT), max_connections=1)

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


@pytest.mark.parametrize("scout_after_s, scouts_at_most, hunt_after_s, expected_stuck", [
    (60.0, 0, 3600.0, 2),  # no scouts: only the window's two requests
    (0.05, 3, 3600.0, 5),  # one scout per 50 ms while nothing answers, at most three: 0.3 s of freeze adds three
    # hunters on: the first hunter's handshake completes (the frozen peer is there), so it is the only one, and
    # as a request on the wire it takes a scout's place: still window + scouts in all
    (0.05, 3, 0.002, 5),
])
def test_a_frozen_target_holds_only_the_requests_the_rate_needed_and_the_window_reopens_under_load(
        scout_after_s, scouts_at_most, hunt_after_s, expected_stuck):
    """The window follows the load: after a quiet period of one-at-a-time probes, a freeze finds two
    connections on the wire (peak use + one spare), so 40 probes piling up wait here instead of queueing
    at the target, scouts aside; once it answers again and probes wait, the window grows back."""

    async def scenario():
        answering = asyncio.Event()
        answering.set()
        open_now, most_open = [0], [0]
        stuck_at_target: list = []

        async def handle(reader, writer):
            open_now[0] += 1
            most_open[0] = max(most_open[0], open_now[0])
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    if not answering.is_set():
                        stuck_at_target.append(1)
                    await answering.wait()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                open_now[0] -= 1
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(Origin("http", "127.0.0.1", port), None, PoolTiming(idle_reuse_s=5.0, window_period_s=0.1, undelivered_after_s=0.05,
                                                                           scout_after_s=scout_after_s, scouts_at_most=scouts_at_most,
                                                                           **(NO_HUNT | {"hunt_after_s": hunt_after_s, "hunt_every_s": 0.001})),
                         max_connections=16)

        async def one():
            conn = await pool.acquire()
            try:
                return (await pool.exchange(conn, "GET", "/", [], None))[0]
            finally:
                pool.release(conn)

        loop = asyncio.get_running_loop()
        end = loop.time() + 0.35
        while loop.time() < end:  # a light load: one probe at a time for a few periods
            assert await one() == 200
            await asyncio.sleep(0.005)
        window_before = pool.window
        answering.clear()  # frozen
        frozen = [asyncio.create_task(one()) for _ in range(40)]
        await asyncio.sleep(0.3)
        stuck = len(stuck_at_target)
        answering.set()  # resumed
        statuses = await asyncio.gather(*frozen)
        statuses += await asyncio.gather(*(one() for _ in range(60)))  # heavy load: the window reopens
        window_after = pool.window
        pool.close()
        server.close()
        await server.wait_closed()
        return window_before, stuck, statuses, window_after, most_open[0]

    window_before, stuck, statuses, window_after, most_open = asyncio.run(scenario())
    assert window_before == 2
    assert stuck == expected_stuck  # not 16: only the window's requests (and scouts) waited inside the frozen target
    assert statuses == [200] * 100
    # never more connections at once than max_connections, but for a hunter that reached the peer in a silence
    assert 2 < window_after <= 16 and most_open <= 16 + (hunt_after_s < 1.0)


@pytest.mark.parametrize(
    "window, peak, waiting, expected",
    [
        (32, 1, 0, 2),  # light load: one spare connection above the peak
        (32, 31, 0, 32),
        (32, 32, 0, 32),  # saturated: unchanged
        (4, 1, 3, 4),  # probes waiting: never shrink
        (1, 0, 0, 1),  # idle: one connection stays usable
        (3, 9, 0, 3),  # never wider at a period's end (growth is the answers' business)
    ],
)
def test_window_after_period(window, peak, waiting, expected):
    assert window_after_period(window, peak, waiting) == expected


@pytest.mark.parametrize(
    "window, max_connections, waiting, answered, expected",
    [
        (2, 32, 5, True, 3),  # probes waiting and the target answered: one wider
        (2, 32, 5, False, 2),  # no answer since the last growth (a silent target): no growth
        (2, 32, 0, True, 2),  # nobody waiting: no need
        (32, 32, 5, True, 32),  # capped
    ],
)
def test_window_after_answer(window, max_connections, waiting, answered, expected):
    assert window_after_answer(window, max_connections, waiting, answered) == expected


@pytest.mark.parametrize(
    "occupied, window, scouts_at_most, quiet_s, expected",
    [
        (1, 2, 4, 0.0, True),  # within the window
        (2, 2, 4, 0.01, False),  # window full, something happened 10 ms ago
        (2, 2, 4, 0.05, True),  # window full and quiet for 50 ms: a scout
        (5, 2, 4, 0.2, True),  # three scouts out, a fourth may go
        (6, 2, 4, 0.2, False),  # four scouts out: no more
        (2, 2, 0, 1.0, False),  # scouting off
    ],
)
def test_may_send(occupied, window, scouts_at_most, quiet_s, expected):
    assert may_send(occupied, window, scouts_at_most, quiet_s, scout_after_s=0.05) is expected


@pytest.mark.parametrize(
    "quiet_s, peer_reached, since_hunt_s, expected",
    [
        (0.001, False, 1.0, False),  # answers still flow: no hunting
        (0.003, False, 1.0, True),  # silent past hunt_after, nothing reached: hunt
        (0.003, True, 1.0, False),  # a hunter reached the peer in this silence: it is frozen, not unreachable
        (0.500, False, 0.0005, False),  # one hunter per hunt_every, even when several probes launch together
        (0.500, False, 0.001, True),
    ],
)
def test_may_hunt(quiet_s, peer_reached, since_hunt_s, expected):
    assert may_hunt(quiet_s, 0.002, peer_reached, since_hunt_s, hunt_every_s=0.001) is expected


@pytest.mark.parametrize("rate_per_s", [200, 1000])
def test_every_probe_of_a_jittered_schedule_hunts_while_the_path_loses_packets(rate_per_s):
    """Probes leave at the period give or take the event loop's jitter: each one that finds the window full
    during a lossy outage must hunt, or the outage's end is found a period late."""
    cfg = SessionConfig()
    period = 1.0 / rate_per_s
    every = hunt_interval_s(period, cfg.hunt_every_floor_s, cfg.hunt_every_periods)
    jitter = [0.1, -0.1, 0.05, -0.05, 0.0, 0.1, -0.1] * 20  # in periods
    last_hunt, hunters = -1.0, 0
    for k, j in enumerate(jitter, start=1):
        t = (k + j) * period
        if may_hunt(1.0, cfg.hunt_after_floor_s, False, t - last_hunt, every):
            last_hunt, hunters = t, hunters + 1
    assert hunters == len(jitter)
    # ... and probes launched together (after a stall of the prober) still send one hunter
    assert not may_hunt(1.0, cfg.hunt_after_floor_s, False, 0.0001, every)


@pytest.mark.parametrize(
    "handshakes_s, expected_s",
    [
        ([], 0.2),  # nothing measured yet: the ceiling
        ([0.0001, 0.0003], 0.01),  # a LAN's round trips: the floor
        ([0.004, 0.01], 0.04),  # a far gateway: four of its slowest round trips
        ([0.09], 0.2),  # never beyond the ceiling
    ],
)
def test_hunt_give_up_s(handshakes_s, expected_s):
    assert hunt_give_up_s(handshakes_s, floor_s=0.01, factor=4.0, ceiling_s=0.2) == pytest.approx(expected_s)
