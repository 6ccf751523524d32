"""A small HTTP/1.1 keep-alive client on asyncio protocols, for probing at thousands of requests per second.

httpx.AsyncClient costs several times more CPU per request; the probe must sustain ≥1,000 transactions/s
(2,000 requests/s) on one core while measuring to the millisecond, so this client does only what probes
need: one request at a time per connection, a LIFO pool of keep-alive connections whose window follows
the load (see livedrill.probe.window), Content-Length,
chunked and close-delimited bodies, TLS with a CA bundle and client certificates.

Each response is stamped (CLOCK_MONOTONIC) when its last bytes are handed to the protocol, before the
waiting coroutine resumes: after a freeze hundreds of responses arrive at once, and stamping at coroutine
resumption would add the client's own backlog to the measured gap.

Every failure is raised as ProbeFailure carrying its kind (series.Outcome), classified here in one place.
Timeouts are imposed by the caller (asyncio.timeout around a whole probe); a connection interrupted by a
timeout or cancellation is closed, never reused.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from livedrill.probe.series import Outcome
from livedrill.probe.window import hunt_give_up_s, may_hunt, may_send, window_after_answer, window_after_period
from livedrill.spec import TLSConfig

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
TCP_INFO_BYTES = 104  # struct tcp_info up to tcpi_rcv_space; Linux has had these fields since 2.6
TCP_INFO_UNACKED_OFFSET = 24  # __u32 tcpi_unacked: segments sent and not yet acknowledged


class ProbeFailure(Exception):
    """A probe failed in a known way; `outcome` is its kind."""

    def __init__(self, outcome: Outcome, detail: str, status: int = 0):
        super().__init__(detail)
        self.outcome = outcome
        self.status = status


def build_ssl_context(tls: TLSConfig | None) -> ssl.SSLContext:
    """Client TLS context: the CA bundle (or system CAs), an optional client certificate."""
    ctx = ssl.create_default_context(cafile=str(tls.ca_bundle) if tls and tls.ca_bundle else None)
    if tls is not None:
        if tls.client_cert is not None:
            ctx.load_cert_chain(str(tls.client_cert), str(tls.client_key) if tls.client_key else None)
        if not tls.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """(origin, request target) of an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an absolute http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname, port), target


class ParsedResponse:
    __slots__ = ("status", "body", "keep_alive", "consumed")

    def __init__(self, status: int, body: bytes, keep_alive: bool, consumed: int):
        self.status = status
        self.body = body
        self.keep_alive = keep_alive
        self.consumed = consumed


def parse_response(buf: bytes | bytearray, method: str, eof: bool) -> ParsedResponse | None:
    """Parse one HTTP/1.1 response from the start of buf; None while incomplete. Raises ValueError if malformed.

    `eof` says the peer closed: that completes a close-delimited body.
    """
    return ResponseReader(method).read(buf, eof)


class ResponseReader:
    """One response, read incrementally from a buffer that only grows until the response is complete.

    What one read established (the head, the chunks so far) is kept, so each read costs its new bytes: a
    body arriving in many reads is not parsed again from its first byte at every read.

    Written here rather than taken from h11 (already a dependency of httpx): benchmarks/http1_parse.py,
    CPython 3.11 on 2 shared CPUs, best of 5, microseconds per response (re-parsing at every read, as this
    module did before, -> this reader; h11 0.16 driven as a client):
        the ledger's 197-byte answer, 1 read            2.9 ->   3.2    h11    30
        a 64 KiB body in 1460-byte reads              108   ->  15      h11   215
        64 KiB chunked (4 KiB chunks), 1460-byte reads 457  ->  58      h11   325
    At the 2,000 responses/s the probe must sustain on one core, h11 would take 6 % of that core for the
    ledger's answers and this reader 0.6 %; h11 would also not stamp arrivals (the connection does that
    before parsing), so it would replace only this class.
    """

    __slots__ = ("method", "_searched", "_head", "_pos", "_chunks")

    def __init__(self, method: str):
        self.method = method
        self._searched = 0  # bytes already searched for the end of the head
        self._head: tuple[int, bool, int, str, int] | None = None  # status, keep-alive, body start, framing, length
        self._pos = 0  # chunked: where the next chunk-size line starts
        self._chunks: list[bytes] = []

    def read(self, buf: bytes | bytearray, eof: bool) -> ParsedResponse | None:
        if self._head is None:
            end = buf.find(b"\r\n\r\n", max(0, self._searched - 3))
            if end < 0:
                self._searched = len(buf)
                if len(buf) > MAX_HEAD_BYTES:
                    raise ValueError("response head too large")
                if eof:
                    raise ConnectionResetError("connection closed before the response head")
                return None
            self._head = _parse_head(buf, end, self.method)
            self._pos = end + 4
        status, keep_alive, start, framing, length = self._head
        if framing == "none":
            return ParsedResponse(status, b"", keep_alive, start)
        if framing == "chunked":
            return self._read_chunks(buf, eof, status, keep_alive, start)
        if framing == "length":
            if len(buf) < start + length:
                if eof:
                    raise ConnectionResetError("connection closed inside the body")
                return None
            return ParsedResponse(status, bytes(buf[start:start + length]), keep_alive, start + length)
        if not eof:  # close-delimited
            if len(buf) - start > MAX_BODY_BYTES:
                raise ValueError("body too large")
            return None
        return ParsedResponse(status, bytes(buf[start:]), False, len(buf))

    def _read_chunks(self, buf: bytes | bytearray, eof: bool, status: int, keep_alive: bool,
                     start: int) -> ParsedResponse | None:
        pos = self._pos
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                break
            size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", line_end)  # zero chunk, optional trailers, blank line
                if buf[line_end:line_end + 4] == b"\r\n\r\n":
                    trailer_end = line_end
                if trailer_end < 0:
                    break
                return ParsedResponse(status, b"".join(self._chunks), keep_alive, trailer_end + 4)
            if len(buf) < line_end + 2 + size + 2:
                break
            self._chunks.append(bytes(buf[line_end + 2:line_end + 2 + size]))
            pos = line_end + 2 + size + 2
            if pos - start > MAX_BODY_BYTES:
                raise ValueError("body too large")
        self._pos = pos
        if eof:
            raise ConnectionResetError("connection closed inside a chunked body")
        return None


def _parse_head(buf: bytes | bytearray, end: int, method: str) -> tuple[int, bool, int, str, int]:
    """(status, keep-alive, body start, framing, content length) of the head that ends at `end`."""
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or len(rest) < 3:
        raise ValueError(f"status line {lines[0]!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    start = end + 4
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, keep_alive, start, "none", 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, keep_alive, start, "chunked", 0
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY_BYTES or length < 0:
            raise ValueError(f"content-length {length} out of range")
        return status, keep_alive, start, "length", length
    return status, keep_alive, start, "close", 0


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request outstanding; the response is stamped on arrival."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.reader = ResponseReader("GET")  # the outstanding request's response, read as it arrives
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self.sent_at = 0.0  # when the outstanding request was written
        self.undelivered = False  # its request is known lost: TCP got no acknowledgement for it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, method: str) -> asyncio.Future:
        assert self.transport is not None and self.waiter is None
        self.reader = ResponseReader(method)
        self.waiter = asyncio.get_running_loop().create_future()
        self.sent_at = time.monotonic()
        self.transport.write(data)
        return self.waiter

    def unacknowledged_bytes_pending(self) -> bool:
        """Does TCP still wait for the peer to acknowledge data we sent (from the kernel's tcp_info)?"""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
        except OSError:
            return False
        return len(info) >= TCP_INFO_BYTES and struct.unpack_from("I", info, TCP_INFO_UNACKED_OFFSET)[0] > 0

    def data_received(self, data: bytes) -> None:
        arrived = time.monotonic()
        self.buffer += data
        self._try_complete(arrived, eof=False)

    def eof_received(self) -> bool:
        self._try_complete(time.monotonic(), eof=True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self._try_complete(time.monotonic(), eof=True)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("connection closed"))

    def _try_complete(self, arrived: float, eof: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = self.reader.read(self.buffer, eof)
        except (ValueError, ConnectionResetError) as exc:
            waiter.set_exception(exc)
            return
        if parsed is not None:
            del self.buffer[:parsed.consumed]
            waiter.set_result((parsed, arrived))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def classify_connect_error(exc: BaseException) -> ProbeFailure:
    if isinstance(exc, ssl.SSLError):
        return ProbeFailure(Outcome.TLS, f"TLS: {exc}")
    return ProbeFailure(Outcome.CONNECT, f"connect: {exc.__class__.__name__}: {exc}")


def classify_exchange_error(exc: BaseException) -> ProbeFailure:
    if isinstance(exc, ssl.SSLError):
        return ProbeFailure(Outcome.TLS, f"TLS: {exc}")
    if isinstance(exc, ValueError):
        return ProbeFailure(Outcome.PROTOCOL, f"malformed response: {exc}")
    return ProbeFailure(Outcome.RESET, f"{exc.__class__.__name__}: {exc}")


@dataclass(frozen=True)
class PoolTiming:
    idle_reuse_s: float  # keep-alive connections idle longer are not reused (gateways drop idle ones)
    window_period_s: float  # how long a peak of concurrent requests keeps the window open (see window.py)
    undelivered_after_s: float  # an older request still unacknowledged by TCP is lost (see Http1Pool)
    scout_after_s: float  # while nothing sent this long ago is answered, one more request may go (see Http1Pool)
    scouts_at_most: int  # requests beyond the window during one outage
    hunt_after_s: float  # nothing answered this long: a probe finding the window full may hunt (see Http1Pool)
    hunt_every_s: float  # at most one hunter per this interval
    hunt_give_up_floor_s: float  # a hunter's handshake is given up after at least this long ...
    hunt_give_up_rtt_factor: float  # ... or this many times the slowest recent handshake ...
    hunt_give_up_ceiling_s: float  # ... and never later than this (also the budget before any handshake was measured)
    hunters_at_most: int  # hunters at once; one more gives up the oldest


class Http1Pool:
    """Keep-alive connections to one origin, lent to one probe at a time, about `window` in use at once.

    A probe holds its connection for its whole exchange (a transaction's write and read-back), so a
    read-back never queues behind new writes. The window (livedrill.probe.window) starts at
    `max_connections` and follows what the rate needs: a frozen target then holds only those few requests
    and serves them first when it resumes, rather than a pile-up whose service time would inflate the very
    gap being measured. Probes beyond the window wait here in FIFO order. Use from one event loop.

    Two outages look alike from here and need opposite treatment. A frozen process (stop-and-copy) still has
    its kernel acknowledge our bytes: the request waits in its socket, and more requests would only pile up.
    At a live migration's switchover packets are lost: TCP retransmits only after its minimum timeout
    (200 ms on Linux) and backs off, so that connection cannot tell when the service is back. A request that
    TCP has still not seen acknowledged after `undelivered_after_s` (longer than a delayed ACK) no longer
    holds a window slot, nor does a connection attempt unanswered as long; the next probe goes out on
    another connection. A proxy between probe and VM (a gateway, the lab's forwarder) acknowledges our bytes
    itself and hides such a loss, so while nothing is sent or answered for `scout_after_s`, one scout request
    goes beyond the window (at most `scouts_at_most`): it finds the service when it is back, and a frozen
    target meets a few more requests, not one per probe.

    A connection is lost as a whole at a switchover too: a request already on it waits for TCP's
    retransmission (200 ms, then 400, 800 ...), and so would any new one sent on it, or on a new connection
    whose SYN was lost (retried after 1 s). So once nothing has answered for `hunt_after_s`, a probe that
    finds the window full opens a fresh connection of its own, a hunter (livedrill.probe.window.may_hunt).
    A hunter whose handshake does not complete within a few round trips (hunt_give_up_s) was lost on the
    path: it is closed and its probe ends as ABANDONED (never delivered, so not a failure of the service),
    and the next probe hunts afresh. The first hunter sent after the path is back is answered at once, so
    the outage is measured to within a probe period. A hunter whose handshake completes has reached a peer
    that is there but not answering (frozen: its kernel still completes handshakes): it sends its request
    like any probe, and no more hunters go out until something answers. Requests already in flight are never
    abandoned: their wait, retransmissions included, is the stall a customer's transaction suffered.
    """

    def __init__(self, origin: Origin, ssl_context: ssl.SSLContext | None, timing: PoolTiming, max_connections: int):
        self.origin = origin
        self.ssl_context = ssl_context if origin.scheme == "https" else None
        self.timing = timing
        self.max_connections = max_connections
        self.window = max_connections
        self._idle: list[_Connection] = []  # most recently used last
        self._open: set[_Connection] = set()
        self._slots = 0  # connections open or being opened, idle or lent
        self._answered_since_growth = True
        self._peak_in_use = 0
        self._period_start = time.monotonic()
        self._waiters: list[asyncio.Future] = []
        self._connecting: list[float] = []  # start times of connection attempts in progress
        self._last_lend_or_answer = time.monotonic()
        self._scout_timer: asyncio.TimerHandle | None = None
        self._last_answer = time.monotonic()  # a response, or an error the peer sent (refused, reset)
        self._peer_reached = False  # a hunter's handshake completed since the last answer
        self._last_hunt = 0.0
        self._hunters: list[asyncio.Future] = []  # one give-up signal per hunter in its handshake, oldest first
        self._handshakes: collections.deque[float] = collections.deque(maxlen=8)  # recent handshake durations, s

    @property
    def in_use(self) -> int:
        return self._slots - len(self._idle)

    def occupied(self) -> int:
        """Requests holding a window slot: lent connections, less those whose request was lost on the way."""
        in_use = self.in_use
        if in_use < self.window:
            return in_use  # nothing to examine: the common case costs no system call
        now = time.monotonic()
        # a connection attempt unanswered that long lost its SYN (TCP retries it only after a second)
        lost = sum(1 for started in self._connecting if now - started >= self.timing.undelivered_after_s)
        for conn in self._open:
            if conn.waiter is not None and not conn.undelivered and now - conn.sent_at >= self.timing.undelivered_after_s:
                conn.undelivered = conn.unacknowledged_bytes_pending()
            lost += conn.undelivered
        return in_use - lost

    def _can_lend(self) -> bool:
        if not self._idle and self._slots >= self.max_connections:
            return False
        return may_send(self.occupied(), self.window, self.timing.scouts_at_most,
                        time.monotonic() - self._last_lend_or_answer, self.timing.scout_after_s)

    def _arm_scout_timer(self) -> None:
        """Probes wait: look again when a scout may be due, even if no further probe arrives meanwhile."""
        if self._scout_timer is None and self.timing.scouts_at_most > 0:
            delay = max(0.0, self._last_lend_or_answer + self.timing.scout_after_s - time.monotonic())
            self._scout_timer = asyncio.get_running_loop().call_later(delay, self._scout_timer_fired)

    def _scout_timer_fired(self) -> None:
        self._scout_timer = None
        self._dispatch()
        if self._waiters:
            self._arm_scout_timer()

    async def acquire(self) -> _Connection:
        self._end_period_if_due()
        self._dispatch()  # requests lost since the last call may have freed window slots
        if self._waiters or not self._can_lend():
            now = time.monotonic()
            # not bounded by max_connections: at a switchover the lost connections still hold their slots (TCP
            # retries them for seconds); hunters have their own bound, hunters_at_most
            if may_hunt(now - self._last_answer, self.timing.hunt_after_s, self._peer_reached,
                        now - self._last_hunt, self.timing.hunt_every_s):
                self._last_hunt = now
                return await self._hunt()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._arm_scout_timer()
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._give_back(waiter.result())  # handed to us as we were cancelled
                raise
        else:
            conn = self._lend()
        if conn is not None:
            return conn
        started = time.monotonic()
        self._connecting.append(started)
        try:
            return await self._connect()
        except BaseException:
            self._give_back(None)
            raise
        finally:
            self._connecting.remove(started)

    def release(self, conn: _Connection) -> None:
        if conn.reusable and not conn.closed:
            conn.idle_since = time.monotonic()
        self._give_back(conn)
        waiting = len(self._waiters)
        wider = window_after_answer(self.window, self.max_connections, waiting, self._answered_since_growth)
        if wider != self.window:
            self.window = wider
            self._answered_since_growth = False
            self._dispatch()
        self._end_period_if_due()

    def _lend(self) -> _Connection | None:
        """An idle connection, or None with a slot reserved for a new one."""
        conn = self._take_idle()
        if conn is None:
            self._slots += 1
        self._peak_in_use = max(self._peak_in_use, self.in_use)
        self._last_lend_or_answer = time.monotonic()
        return conn

    def _give_back(self, conn: _Connection | None) -> None:
        """A lent connection (or, with None, a reserved slot) comes back; the first waiter may take it."""
        if conn is not None and conn.reusable and not conn.closed:
            self._idle.append(conn)
        else:
            if conn is not None:
                self._open.discard(conn)
                conn.close()
            self._slots -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        while self._waiters and self._can_lend():
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(self._lend())  # None: the waiter opens the connection itself

    def _end_period_if_due(self) -> None:
        now = time.monotonic()
        if now - self._period_start < self.timing.window_period_s:
            return
        self.window = window_after_period(self.window, self._peak_in_use, len(self._waiters))
        while self._idle and self._slots > self.window:  # close the oldest idle connections beyond the window
            conn = self._idle.pop(0)
            self._open.discard(conn)
            conn.close()
            self._slots -= 1
        self._peak_in_use = self.in_use
        self._period_start = now

    async def _hunt(self) -> _Connection:
        """A fresh connection for one probe during a silence, given up if its handshake is lost (see class doc)."""
        loop = asyncio.get_running_loop()
        give_up = loop.create_future()
        self._hunters.append(give_up)
        if len(self._hunters) > self.timing.hunters_at_most:
            oldest = self._hunters[0]
            if not oldest.done():
                oldest.set_result(None)
        budget_s = hunt_give_up_s(list(self._handshakes), self.timing.hunt_give_up_floor_s,
                                  self.timing.hunt_give_up_rtt_factor, self.timing.hunt_give_up_ceiling_s)
        handshake = asyncio.ensure_future(self._handshake())
        try:
            done, _ = await asyncio.wait({handshake, give_up}, timeout=budget_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._hunters.remove(give_up)
            if not handshake.done():
                handshake.cancel()  # closes its socket
        if handshake not in done:
            raise ProbeFailure(Outcome.ABANDONED, f"handshake not completed within {budget_s * 1000:.1f} ms: lost on the path")
        sock = handshake.result()  # a refusal or reset the peer sent is an answer (ProbeFailure, see _handshake)
        self._peer_reached = True
        self._slots += 1
        try:
            return await self._wrap(sock)
        except BaseException:
            self._give_back(None)
            raise

    async def _connect(self) -> _Connection:
        return await self._wrap(await self._handshake())

    async def _handshake(self) -> socket.socket:
        """TCP connect alone, timed: its duration is a round trip to the target's kernel (see hunt_give_up_s)."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        sock = None
        try:
            try:  # an address needs no resolver: resolving it in the loop's thread pool would reorder connects
                infos = socket.getaddrinfo(self.origin.host, self.origin.port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_NUMERICHOST)
            except socket.gaierror:
                infos = await loop.getaddrinfo(self.origin.host, self.origin.port, type=socket.SOCK_STREAM)
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            if sock is not None:
                sock.close()
            self._answered()
            raise classify_connect_error(exc) from None
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        took = time.monotonic() - started
        if took <= self.timing.hunt_give_up_ceiling_s:  # a SYN retried after a loss says nothing of the round trip
            self._handshakes.append(took)
        return sock

    async def _wrap(self, sock: socket.socket) -> _Connection:
        """The protocol (and TLS) on a connected socket."""
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _Connection, sock=sock, ssl=self.ssl_context,
                server_hostname=self.origin.host if self.ssl_context else None,
            )
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise classify_connect_error(exc) from None
        except BaseException:
            sock.close()
            raise
        self._open.add(conn)
        return conn

    def _answered(self) -> None:
        self._last_answer = time.monotonic()
        self._peer_reached = False

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since <= self.timing.idle_reuse_s and not conn.closed:
                return conn
            self._open.discard(conn)
            conn.close()
            self._slots -= 1
        return None

    async def exchange(self, conn: _Connection, method: str, target: str, headers: list[tuple[str, str]],
                       body: bytes | None) -> tuple[int, bytes, float]:
        """One request on a connection from acquire(): (status, body, arrival of the last response bytes)."""
        conn.reusable = False  # until a complete response proves otherwise (timeouts, cancellation)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.origin.host_header}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        try:
            parsed, arrived = await conn.send(data, method)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._answered()
            raise classify_exchange_error(exc) from None
        finally:
            conn.waiter = None
            conn.undelivered = False
        conn.reusable = parsed.keep_alive and not conn.closed and not conn.buffer
        self._answered_since_growth = True
        self._last_lend_or_answer = time.monotonic()
        self._answered()
        return parsed.status, parsed.body, arrived

    def close(self) -> None:
        for give_up in self._hunters:
            if not give_up.done():
                give_up.set_result(None)
        if self._scout_timer is not None:
            self._scout_timer.cancel()
            self._scout_timer = None
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
