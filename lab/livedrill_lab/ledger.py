"""The lab ledger: a tiny core-accounting service that the drill's transaction probes write to.

Run it as its own OS process::

    python -m livedrill_lab.ledger --host 127.0.0.1 --port 0 --data-dir DIR

Contract (other code relies on it):

- ``GET /healthz`` -> 200 ``{"status":"ok","boot_id","pid","postings"}``
- ``POST /transfers`` ``{"id","from","to","amount"}`` -> 201 ``{"id","seq","status":"committed"}`` on the first
  write; 200 with the same body plus ``"replayed": true`` when the id was already posted (no second posting);
  409 when the id was posted with a different from/to/amount; 400 naming the bad field; 503 if storage failed
  (nothing posted).
- ``GET /transfers/{id}`` -> 200 ``{"id","seq","from","to","amount","postings"}`` or 404 ``{"error":"not found"}``.
  ``postings`` counts the rows carrying that idempotency key, so a duplicate is visible.

Storage is sqlite in WAL mode in ``DIR/ledger.sqlite3``, table ``postings(seq, txid, src, dst, amount)``.
The idempotency key is deliberately NOT a unique index: idempotency is enforced by this single-threaded
server (look-up then insert inside one transaction), so that a duplicate injected from outside stays
visible to reconciliation instead of being impossible to represent. The writes read in one event-loop
iteration share one commit (group commit: after a freeze the backlog drains in one transaction), and no
write is answered before its COMMIT returned. A commit has handed its pages to the kernel, so it survives a
crash or restart of this process; ``synchronous=OFF`` skips the fsyncs that only a power loss of the host
would need (a lab does not model one): with them, sqlite's WAL checkpoints stalled a commit, and every
request queued behind it, for 3-5 ms several times a second, and the lab's only interruptions must be
the freezes it records.

Readiness: once listening, ``DIR/ready`` is written atomically (temp file + rename) as JSON
``{"pid","port","boot_id"}``; it is removed on a clean exit (SIGTERM/SIGINT). SIGSTOP/SIGCONT need no
handling: the process simply resumes and serves what queued in its sockets.

The HTTP/1.1 server is a small keep-alive loop on ``asyncio.Protocol`` (``http.server`` cannot reach the
required thousands of requests per second on one core). Requests on one connection are answered in order.
Only ``Content-Length`` bodies are accepted (411 otherwise); that is all the probes and the lab need.
``--tls-cert/--tls-key`` serve HTTPS instead; ``--tls-client-ca`` also requires client certificates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import ssl
import sys
import uuid
from pathlib import Path

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
MAX_ID_CHARS = 200

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    503: "Service Unavailable",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
}


class BadInput(Exception):
    """A client error: the message names the offending field."""


def validate_transfer(payload: object) -> tuple[str, str, str, int]:
    """Check a transfer body; return (id, from, to, amount) or raise BadInput naming the field."""
    if not isinstance(payload, dict):
        raise BadInput("body must be a JSON object with fields id, from, to, amount")
    unknown = sorted(set(payload) - {"id", "from", "to", "amount"})
    if unknown:
        raise BadInput(f"unknown field(s) {unknown}; expected id, from, to, amount")
    for field in ("id", "from", "to"):
        value = payload.get(field)
        if not isinstance(value, str) or not value.strip():
            raise BadInput(f"field {field!r} must be a non-empty string")
        if len(value) > MAX_ID_CHARS:
            raise BadInput(f"field {field!r} is longer than {MAX_ID_CHARS} characters")
    amount = payload.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise BadInput("field 'amount' must be an integer (minor currency units)")
    if amount <= 0:
        raise BadInput("field 'amount' must be positive")
    if payload["from"] == payload["to"]:
        raise BadInput("field 'to' must differ from field 'from'")
    return payload["id"], payload["from"], payload["to"], amount


class LedgerStore:
    """Postings in sqlite. Used from the server's single thread only."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS postings ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, txid TEXT NOT NULL, src TEXT NOT NULL,"
            " dst TEXT NOT NULL, amount INTEGER NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS postings_txid ON postings (txid)")
        # Counted once at boot, then maintained: /healthz must stay cheap at probe rates.
        self.postings = self._db.execute("SELECT COUNT(*) FROM postings").fetchone()[0]

    def lookup(self, txid: str) -> tuple[int, str, str, int, int] | None:
        """(first seq, from, to, amount, number of postings with this key), or None."""
        rows = self._db.execute(
            "SELECT seq, src, dst, amount FROM postings WHERE txid = ? ORDER BY seq", (txid,)
        ).fetchall()
        if not rows:
            return None
        seq, src, dst, amount = rows[0]
        return seq, src, dst, amount, len(rows)

    def post_batch(self, transfers: list[tuple[str, str, str, int]]) -> list[tuple[int, dict]]:
        """Apply validated transfers in order in ONE committed transaction; return each (status, answer).

        Group commit: after a freeze, hundreds of writes arrive at once and one commit per write would
        make the backlog drain (and the observed outage) longer. Nothing is answered before COMMIT returns.
        """
        answers: list[tuple[int, dict]] = []
        inserted = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for txid, src, dst, amount in transfers:
                existing = self.lookup(txid)
                if existing is not None:
                    seq, old_src, old_dst, old_amount, _ = existing
                    if (old_src, old_dst, old_amount) != (src, dst, amount):
                        answers.append((409, {"error": f"id {txid!r} was already posted with a different from/to/amount",
                                              "seq": seq}))
                    else:
                        answers.append((200, {"id": txid, "seq": seq, "status": "committed", "replayed": True}))
                    continue
                cur = self._db.execute(
                    "INSERT INTO postings (txid, src, dst, amount) VALUES (?, ?, ?, ?)", (txid, src, dst, amount)
                )
                inserted += 1
                answers.append((201, {"id": txid, "seq": cur.lastrowid, "status": "committed"}))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            return [(503, {"error": f"storage failure, nothing posted: {exc}"})] * len(transfers)
        self.postings += inserted
        return answers

    def close(self) -> None:
        self._db.close()


class LedgerApp:
    """Routes one request to a (status, JSON body) answer; valid transfers are queued for the next group commit."""

    def __init__(self, store: LedgerStore, boot_id: str):
        self.store = store
        self.boot_id = boot_id
        self._batch: list[tuple["HttpConnection", tuple[str, str, str, int], bool]] = []

    def handle(self, conn: "HttpConnection", method: str, target: str, body: bytes,
               keep_alive: bool) -> tuple[int, dict] | None:
        """The answer now, or None when the request joined the group commit (conn is answered by flush)."""
        path = target.split("?", 1)[0]
        if path == "/healthz":
            if method != "GET":
                return 405, {"error": f"{method} not allowed on /healthz"}
            return 200, {"status": "ok", "boot_id": self.boot_id, "pid": os.getpid(), "postings": self.store.postings}
        if path == "/transfers":
            if method != "POST":
                return 405, {"error": f"{method} not allowed on /transfers"}
            return self._post_transfer(conn, body, keep_alive)
        if path.startswith("/transfers/"):
            if method != "GET":
                return 405, {"error": f"{method} not allowed on {path}"}
            return self._get_transfer(path[len("/transfers/"):])
        return 404, {"error": "not found"}

    def _post_transfer(self, conn: "HttpConnection", body: bytes, keep_alive: bool) -> tuple[int, dict] | None:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return 400, {"error": "body is not valid JSON"}
        try:
            transfer = validate_transfer(payload)
        except BadInput as exc:
            return 400, {"error": str(exc)}
        if not self._batch:
            # runs after every request already read in this loop iteration: they share one commit
            asyncio.get_running_loop().call_soon(self.flush)
        self._batch.append((conn, transfer, keep_alive))
        return None

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        answers = self.store.post_batch([transfer for _, transfer, _ in batch])
        for (conn, _, keep_alive), (status, answer) in zip(batch, answers):
            conn.answer_deferred(status, answer, keep_alive)

    def _get_transfer(self, raw_id: str) -> tuple[int, dict]:
        from urllib.parse import unquote

        txid = unquote(raw_id)
        found = self.store.lookup(txid)
        if found is None:
            return 404, {"error": "not found"}
        seq, src, dst, amount, count = found
        return 200, {"id": txid, "seq": seq, "from": src, "to": dst, "amount": amount, "postings": count}


class HttpConnection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; parses requests from the buffer and answers each in order."""

    def __init__(self, app: LedgerApp, connections: set):
        self.app = app
        self.connections = connections
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.awaiting_commit = False  # answers go out in request order: parse no further until then

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing() and not self.awaiting_commit:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self._respond(431, {"error": "request head too large"}, keep_alive=False)
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                self._respond(400, {"error": "malformed request line"}, keep_alive=False)
                return
            method, target, version = parts
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    self._respond(400, {"error": "malformed header line"}, keep_alive=False)
                    return
                headers[name.strip().lower()] = value.strip()
            connection = headers.get("connection", "").lower()
            keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
            if "transfer-encoding" in headers:
                self._respond(411, {"error": "send the body with Content-Length"}, keep_alive=False)
                return
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._respond(400, {"error": "header 'content-length' is not an integer"}, keep_alive=False)
                return
            if length < 0 or length > MAX_BODY_BYTES:
                self._respond(413, {"error": f"body must be 0..{MAX_BODY_BYTES} bytes"}, keep_alive=False)
                return
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4:total])
            del self.buffer[:total]
            result = self.app.handle(self, method, target, body, keep_alive)
            if result is None:
                self.awaiting_commit = True
                return
            self._respond(*result, keep_alive)

    def answer_deferred(self, status: int, answer: dict, keep_alive: bool) -> None:
        self.awaiting_commit = False
        if self.transport is None or self.transport.is_closing():
            return  # the client left; the write is committed and a replay of its id will say so
        self._respond(status, answer, keep_alive)
        if self.buffer:
            self.data_received(b"")

    def _respond(self, status: int, answer: dict, keep_alive: bool) -> None:
        payload = json.dumps(answer, separators=(",", ":")).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        ).encode()
        assert self.transport is not None
        self.transport.write(head + payload)
        if not keep_alive:
            self.transport.close()


def write_ready_file(data_dir: Path, pid: int, port: int, boot_id: str) -> Path:
    """Write DIR/ready atomically so a reader never sees a partial file."""
    ready = data_dir / "ready"
    tmp = data_dir / f".ready.{pid}.tmp"
    tmp.write_text(json.dumps({"pid": pid, "port": port, "boot_id": boot_id}))
    os.replace(tmp, ready)
    return ready


def server_ssl_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """TLS for the ledger; with a client CA, a client certificate signed by it is required (mutual TLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def serve(host: str, port: int, data_dir: Path, tls: ssl.SSLContext | None = None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    ready = data_dir / "ready"
    ready.unlink(missing_ok=True)  # a stale file from a previous run must not look like this run
    boot_id = uuid.uuid4().hex
    store = LedgerStore(data_dir / "ledger.sqlite3")
    app = LedgerApp(store, boot_id)
    connections: set[HttpConnection] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpConnection(app, connections), host, port, backlog=1024, ssl=tls)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound_port = server.sockets[0].getsockname()[1]
    write_ready_file(data_dir, os.getpid(), bound_port, boot_id)
    try:
        await stop.wait()
    finally:
        ready.unlink(missing_ok=True)
        server.close()
        for conn in list(connections):
            if conn.transport is not None:
                conn.transport.close()
        await server.wait_closed()
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m livedrill_lab.ledger", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks an ephemeral port (see DIR/ready)")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", type=Path, help="private key of --tls-cert (PEM)")
    parser.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by this CA (PEM)")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_client_ca and not args.tls_cert):
        parser.error("--tls-cert and --tls-key go together; --tls-client-ca needs them")
    tls = server_ssl_context(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    asyncio.run(serve(args.host, args.port, args.data_dir, tls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
