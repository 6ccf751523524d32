"""What one probe of each kind does: a transaction (write + read-back), an HTTP check, a TCP exchange.

A runner performs one attempt and either returns (success) or raises ProbeFailure. Progress is written
into the `Attempt` as it happens, so a timeout in the read-back still knows the write was acknowledged.
Runners never impose timeouts themselves: the engine bounds each whole probe.

Each probe kind of the spec registers its runner in `RUNNERS`; the engine builds runners only through
`build_runner`, so a new kind is its spec model plus a runner here.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from livedrill.probe.http1 import Http1Pool, Origin, PoolTiming, ProbeFailure, classify_connect_error, classify_exchange_error, split_url
from livedrill.probe.measure import classify_readback, json_mismatch, substitute
from livedrill.probe.series import Outcome, Step
from livedrill.spec import HttpProbe, HttpRequestTemplate, Probe, TcpProbe, TransactionProbe

TXID_PLACEHOLDER = "{txid}"


@dataclass(frozen=True)
class RunnerContext:
    """What the engine gives every runner it builds: one probe's pools, TLS context and pool timing."""

    txid_prefix: str
    pools: dict
    ssl_context: ssl.SSLContext | None
    timing: PoolTiming


class Reconciler(Protocol):
    """A runner whose acknowledged writes can be read back once more after the drill (lost/duplicated)."""

    def txid(self, seq: int) -> str: ...

    async def reconcile_one(self, txid: str) -> tuple[str, int | None]: ...


class Runner(Protocol):
    # Written into the series header; None for a kind whose requests carry no transaction id.
    txid_prefix: str | None

    async def once(self, seq: int, attempt: Attempt) -> None: ...

    def reconciler(self) -> Reconciler | None:
        """Itself when its probe asks for a final read-back, else None."""


class Attempt:
    __slots__ = ("step", "status", "t_ack", "t_done")

    def __init__(self) -> None:
        self.step = Step.NONE
        self.status = 0
        self.t_ack: float | None = None  # arrival of the write's acknowledgement
        self.t_done: float | None = None  # arrival of the answer that completed the probe


class PreparedRequest:
    """A request template compiled once: origin fixed, `{txid}` substituted per call."""

    def __init__(self, template: HttpRequestTemplate, pools: dict[Origin, Http1Pool], ssl_context: ssl.SSLContext | None,
                 timing: PoolTiming, max_connections: int):
        origin, self.target = split_url(template.url)  # `{txid}` survives urlsplit in the path and query
        if TXID_PLACEHOLDER in origin.host:
            raise ValueError(f"{template.url!r}: {{txid}} may appear in the path or query, not in the host")
        self.template = template
        if origin not in pools:
            pools[origin] = Http1Pool(origin, ssl_context, timing, max_connections)
        self.pool = pools[origin]
        self.method = template.method
        self.has_body = template.json_body is not None
        self.body_text = json.dumps(template.json_body, separators=(",", ":")) if self.has_body else ""
        self.headers = list(template.resolved_headers().items())
        if self.has_body and not any(k.lower() == "content-type" for k, _ in self.headers):
            self.headers.append(("Content-Type", "application/json"))
        self.expect_status = set(template.expect_status)
        self.expect_json = template.expect_json
        self.needs_txid = TXID_PLACEHOLDER in template.url or TXID_PLACEHOLDER in self.body_text or any(
            TXID_PLACEHOLDER in v for _, v in self.headers
        )

    async def send(self, txid: str, conn) -> tuple[int, bytes, float]:
        """Send on a connection lent by self.pool: (status, body, arrival time)."""
        target, headers, body = self.target, self.headers, None
        if self.needs_txid:
            target = target.replace(TXID_PLACEHOLDER, txid)
            headers = [(k, v.replace(TXID_PLACEHOLDER, txid)) for k, v in headers]
        if self.has_body:
            body = self.body_text.replace(TXID_PLACEHOLDER, txid).encode()
        return await self.pool.exchange(conn, self.method, target, headers, body)

    async def send_alone(self, txid: str) -> tuple[int, bytes, float]:
        conn = await self.pool.acquire()
        try:
            return await self.send(txid, conn)
        finally:
            self.pool.release(conn)

    def judge(self, status: int, payload: bytes, txid: str) -> None:
        """Raise ProbeFailure unless the answer meets the template's success criteria."""
        if status not in self.expect_status:
            raise ProbeFailure(Outcome.STATUS, f"HTTP {status}, expected one of {sorted(self.expect_status)}", status)
        if self.expect_json:
            problem = json_mismatch(parse_json(payload), substitute(self.expect_json, txid))
            if problem:
                raise ProbeFailure(Outcome.BODY_MISMATCH, problem, status)


def parse_json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None


class TransactionRunner:
    """Write with a fresh idempotency key, then read it back and verify it."""

    def __init__(self, probe: TransactionProbe, context: RunnerContext):
        self.probe = probe
        self.txid_prefix: str | None = context.txid_prefix
        self.write = PreparedRequest(probe.write, context.pools, context.ssl_context, context.timing, probe.max_connections)
        self.read = PreparedRequest(probe.read, context.pools, context.ssl_context, context.timing, probe.max_connections)
        self.not_found = set(probe.reconcile.not_found_status)

    def reconciler(self) -> Reconciler | None:
        return self if self.probe.reconcile.enabled else None

    def txid(self, seq: int) -> str:
        return f"{self.txid_prefix}{seq}"

    async def once(self, seq: int, attempt: Attempt) -> None:
        txid = self.txid(seq)
        attempt.step = Step.WRITE
        pool = self.write.pool
        conn = await pool.acquire()
        try:
            status, payload, arrived = await self.write.send(txid, conn)
            attempt.status = status
            self.write.judge(status, payload, txid)
            attempt.t_ack = arrived
            attempt.step = Step.READ
            if self.read.pool is not pool:  # read-back served by another origin
                pool.release(conn)
                conn, pool = None, self.read.pool
                conn = await pool.acquire()
            status, payload, arrived = await self.read.send(txid, conn)
        finally:
            if conn is not None:
                pool.release(conn)
        attempt.status = status
        if status in self.not_found:
            raise ProbeFailure(Outcome.NOT_FOUND, f"acknowledged transaction {txid} not found on read-back", status)
        self.read.judge(status, payload, txid)
        attempt.t_done = arrived

    async def reconcile_one(self, txid: str) -> tuple[str, int | None]:
        """Final read-back of one acknowledged transaction: (verdict, HTTP status or None)."""
        try:
            status, payload, _ = await self.read.send_alone(txid)
        except ProbeFailure:
            return classify_readback(None, None, ok_status=[], not_found_status=[], count_field=None, expected={}), None
        verdict = classify_readback(
            status, parse_json(payload),
            ok_status=sorted(self.read.expect_status), not_found_status=sorted(self.not_found),
            count_field=self.probe.reconcile.count_field, expected=substitute(self.read.expect_json, txid),
        )
        return verdict, status


class HttpRunner:
    txid_prefix = None

    def __init__(self, probe: HttpProbe, context: RunnerContext):
        self.request = PreparedRequest(probe.request, context.pools, context.ssl_context, context.timing,
                                       probe.max_connections)
        if self.request.needs_txid:
            raise ValueError(f"probe {probe.name!r}: an http probe has no transaction id; use kind: transaction")

    def reconciler(self) -> Reconciler | None:
        return None

    async def once(self, seq: int, attempt: Attempt) -> None:
        attempt.step = Step.WRITE
        status, payload, arrived = await self.request.send_alone("")
        attempt.status = status
        self.request.judge(status, payload, "")
        attempt.t_done = arrived


class TcpRunner:
    """Connect (TLS if configured), optionally send, optionally wait for `expect` in the reply."""

    txid_prefix = None

    def __init__(self, probe: TcpProbe, context: RunnerContext):
        self.probe = probe
        self.ssl_context = context.ssl_context if probe.tls is not None else None
        self.send = probe.send.encode() if probe.send is not None else None
        self.expect = probe.expect.encode() if probe.expect is not None else None

    def reconciler(self) -> Reconciler | None:
        return None

    async def once(self, seq: int, attempt: Attempt) -> None:
        attempt.step = Step.WRITE
        try:
            reader, writer = await asyncio.open_connection(
                self.probe.host, self.probe.port, ssl=self.ssl_context,
                server_hostname=self.probe.host if self.ssl_context else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise classify_connect_error(exc) from None
        try:
            if self.send is not None:
                writer.write(self.send)
            if self.expect is not None:
                received = b""
                try:
                    while self.expect not in received:
                        chunk = await reader.read(65536)
                        if not chunk:
                            raise ProbeFailure(Outcome.BODY_MISMATCH, f"connection closed before {self.probe.expect!r} arrived")
                        received += chunk
                except (OSError, ssl.SSLError) as exc:
                    raise classify_exchange_error(exc) from None
            attempt.t_done = time.monotonic()
        finally:
            writer.close()


RUNNERS: dict[str, Callable[[Any, RunnerContext], Runner]] = {
    "transaction": TransactionRunner,
    "http": HttpRunner,
    "tcp": TcpRunner,
}


def build_runner(probe: Probe, context: RunnerContext) -> Runner:
    try:
        make = RUNNERS[probe.kind]
    except KeyError:
        raise ValueError(f"probe {probe.name!r}: no runner for probe kind {probe.kind!r}") from None
    return make(probe, context)
