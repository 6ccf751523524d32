"""The lab ledger as a user sees it: a real process, real HTTP, real sqlite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import httpx
import pytest

from livedrill_lab.ledger import BadInput, validate_transfer


@pytest.mark.parametrize(
    "payload, field",
    [
        ([], "JSON object"),
        ({"id": "", "from": "a", "to": "b", "amount": 1}, "'id'"),
        ({"id": "t", "to": "b", "amount": 1}, "'from'"),
        ({"id": "t", "from": "a", "to": 3, "amount": 1}, "'to'"),
        ({"id": "t", "from": "a", "to": "b", "amount": "1"}, "'amount'"),
        ({"id": "t", "from": "a", "to": "b", "amount": True}, "'amount'"),
        ({"id": "t", "from": "a", "to": "b", "amount": 0}, "'amount'"),
        ({"id": "t", "from": "a", "to": "a", "amount": 1}, "'to'"),
        ({"id": "t", "from": "a", "to": "b", "amount": 1, "memo": "x"}, "memo"),
    ],
)
def test_validate_transfer_names_the_bad_field(payload, field):
    with pytest.raises(BadInput, match=field):
        validate_transfer(payload)


def test_validate_transfer_accepts_a_good_one():
    assert validate_transfer({"id": "t1", "from": "a", "to": "b", "amount": 7}) == ("t1", "a", "b", 7)


def test_contract_write_replay_read_health(ledger):
    lp = ledger()
    with httpx.Client(base_url=lp.url, timeout=5) as http:
        first = http.post("/transfers", json={"id": "tx-1", "from": "acct-a", "to": "acct-b", "amount": 125})
        assert first.status_code == 201
        assert first.json() == {"id": "tx-1", "seq": first.json()["seq"], "status": "committed"}
        again = http.post("/transfers", json={"id": "tx-1", "from": "acct-a", "to": "acct-b", "amount": 125})
        assert again.status_code == 200
        assert again.json() == {**first.json(), "replayed": True}
        clash = http.post("/transfers", json={"id": "tx-1", "from": "acct-a", "to": "acct-b", "amount": 999})
        assert clash.status_code == 409
        bad = http.post("/transfers", json={"id": "tx-2", "from": "acct-a", "to": "acct-b"})
        assert bad.status_code == 400 and "amount" in bad.json()["error"]
        read = http.get("/transfers/tx-1")
        assert read.status_code == 200
        assert read.json() == {"id": "tx-1", "seq": first.json()["seq"], "from": "acct-a", "to": "acct-b",
                               "amount": 125, "postings": 1}
        missing = http.get("/transfers/nope")
        assert missing.status_code == 404 and missing.json() == {"error": "not found"}
        health = http.get("/healthz").json()
        assert health == {"status": "ok", "boot_id": lp.boot_id, "pid": lp.proc.pid, "postings": 1}
        # keep-alive: all of the above went over one connection
        assert http.get("/healthz").headers["connection"] == "keep-alive"


def test_writes_survive_a_restart_and_a_new_boot_id_is_announced(ledger, tmp_path):
    data = tmp_path / "durable"
    first = ledger(data)
    with httpx.Client(base_url=first.url, timeout=5) as http:
        seq = http.post("/transfers", json={"id": "keep-me", "from": "a", "to": "b", "amount": 1}).json()["seq"]
    first.proc.terminate()
    assert first.proc.wait(timeout=10) == 0
    assert not (data / "ready").exists()
    second = ledger(data)
    assert second.boot_id != first.boot_id
    with httpx.Client(base_url=second.url, timeout=5) as http:
        assert http.get("/transfers/keep-me").json()["seq"] == seq
        replay = http.post("/transfers", json={"id": "keep-me", "from": "a", "to": "b", "amount": 1})
        assert replay.status_code == 200 and replay.json()["replayed"] is True
        assert http.get("/healthz").json()["postings"] == 1


def test_a_duplicate_in_storage_is_visible_in_postings(ledger):
    lp = ledger()
    with httpx.Client(base_url=lp.url, timeout=5) as http:
        http.post("/transfers", json={"id": "dup", "from": "a", "to": "b", "amount": 3})
        with sqlite3.connect(lp.db_path) as db:
            db.execute("INSERT INTO postings (txid, src, dst, amount) VALUES ('dup', 'a', 'b', 3)")
        assert http.get("/transfers/dup").json()["postings"] == 2


def test_sigstop_then_sigcont_resumes_serving_what_queued(ledger):
    lp = ledger()
    with httpx.Client(base_url=lp.url, timeout=5) as http:
        assert http.get("/healthz").status_code == 200
        os.kill(lp.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(httpx.ReadTimeout):
                http.get("/healthz", timeout=0.2)
        finally:
            os.kill(lp.proc.pid, signal.SIGCONT)
    with httpx.Client(base_url=lp.url, timeout=5) as http:
        assert http.get("/healthz").json()["boot_id"] == lp.boot_id


def test_ready_file_is_complete_json_and_port_zero_is_ephemeral(ledger):
    lp = ledger()
    info = json.loads((lp.data_dir / "ready").read_text())
    assert info == {"pid": lp.proc.pid, "port": lp.port, "boot_id": lp.boot_id}
    assert lp.port > 0
    assert not list(lp.data_dir.glob(".ready.*"))


def _raw_exchange(sock, payload: bytes, responses: int) -> list[bytes]:
    """Send raw bytes, read `responses` complete HTTP responses (Content-Length framed)."""
    sock.sendall(payload)
    buf, out = b"", []
    while len(out) < responses:
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        buf += chunk
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            length = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
            if len(rest) < length:
                break
            out.append(head.split(b"\r\n")[0] + b" " + rest[:length])
            buf = rest[length:]
    return out


def _post(txid: str) -> bytes:
    body = json.dumps({"id": txid, "from": "a", "to": "b", "amount": 1}).encode()
    return b"POST /transfers HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def test_pipelined_write_then_read_are_answered_in_order(ledger):
    import socket

    lp = ledger()
    with socket.create_connection(("127.0.0.1", lp.port), timeout=5) as sock:
        replies = _raw_exchange(sock, _post("p1") + b"GET /transfers/p1 HTTP/1.1\r\nHost: t\r\n\r\n" + _post("p1"), 3)
    assert replies[0].startswith(b"HTTP/1.1 201") and b'"seq":1' in replies[0]
    assert replies[1].startswith(b"HTTP/1.1 200") and b'"postings":1' in replies[1]
    assert replies[2].startswith(b"HTTP/1.1 200") and b'"replayed":true' in replies[2]


def test_a_backlog_released_by_sigcont_is_committed_once_per_id(ledger):
    import socket

    lp = ledger()
    socks = [socket.create_connection(("127.0.0.1", lp.port), timeout=5) for _ in range(20)]
    try:
        os.kill(lp.proc.pid, signal.SIGSTOP)
        try:
            for i, s in enumerate(socks):  # ten ids, each sent twice on different connections
                s.sendall(_post(f"b{i % 10}"))
            time.sleep(0.1)
        finally:
            os.kill(lp.proc.pid, signal.SIGCONT)
        replies = [_raw_exchange(s, b"", 1)[0] for s in socks]
    finally:
        for s in socks:
            s.close()
    assert sum(r.startswith(b"HTTP/1.1 201") for r in replies) == 10
    assert sum(b'"replayed":true' in r for r in replies) == 10
    with sqlite3.connect(lp.db_path) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT txid) FROM postings").fetchone() == (10, 10)
