"""What parsing one HTTP/1.1 response costs the probe: livedrill.probe.http1's reader against h11.

    .venv/bin/python benchmarks/http1_parse.py [--repeat 5]

Each case hands a response to the parser as the network does, in reads of `read B` bytes (the ledger's
and the gateway's answers arrive in one read; a large body arrives in MSS-sized pieces), and reports
microseconds per response, best of --repeat. h11 is driven as a client must drive it: its request event
sent first (h11 refuses a response without one), then `receive_data` per read and `next_event` until
the end of the message, then `start_next_cycle` for the next keep-alive exchange. Figures only.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import h11

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livedrill.probe.http1 import ResponseReader  # noqa: E402

LEDGER_BODY = b'{"id": "ld-20261203T090000Z-ab12cd-0-000123", "from": "acct-drill-a", "to": "acct-drill-b", "amount": 1}'


def content_length(body: bytes) -> bytes:
    return (b"HTTP/1.1 201 Created\r\nServer: ledger\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def chunked(body: bytes, chunk: int) -> bytes:
    parts = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for i in range(0, len(body), chunk):
        piece = body[i:i + chunk]
        parts.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
    return b"".join(parts) + b"0\r\n\r\n"


CASES = {
    "ledger answer, 1 read": (content_length(LEDGER_BODY), 65536),
    "ledger answer, 3 reads": (content_length(LEDGER_BODY), 90),
    "64 KiB body, 1460 B reads": (content_length(os.urandom(65536)), 1460),
    "1 MiB body, 1460 B reads": (content_length(os.urandom(1 << 20)), 1460),
    "64 KiB chunked (4 KiB chunks), 1460 B reads": (chunked(os.urandom(65536), 4096), 1460),
}


def reads(raw: bytes, size: int) -> list[bytes]:
    return [raw[i:i + size] for i in range(0, len(raw), size)]


def livedrill_parse(pieces: list[bytes], n: int) -> None:
    for _ in range(n):
        reader, buf = ResponseReader("GET"), bytearray()
        for piece in pieces:
            buf += piece
            parsed = reader.read(buf, eof=False)
        assert parsed is not None


def h11_parse(pieces: list[bytes], n: int) -> None:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target="/transfers/x", headers=[("Host", "127.0.0.1")])
    for _ in range(n):
        conn.send(request)
        conn.send(h11.EndOfMessage())
        body, done = [], False
        for piece in pieces:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Data):
                    body.append(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    done = True
                    break
        assert done
        conn.start_next_cycle()


def per_response_us(fn, pieces: list[bytes], repeat: int) -> float:
    n = max(1, 20000 // len(pieces))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(pieces, n)
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs (shared), "
          f"h11 {h11.__version__}; best of {args.repeat}; microseconds per response")
    print(f"{'case':<46} {'bytes':>8} {'reads':>5} {'livedrill':>10} {'h11':>10}")
    for name, (raw, size) in CASES.items():
        pieces = reads(raw, size)
        ours = per_response_us(livedrill_parse, pieces, args.repeat)
        theirs = per_response_us(h11_parse, pieces, args.repeat)
        print(f"{name:<46} {len(raw):>8} {len(pieces):>5} {ours:>10.1f} {theirs:>10.1f}")


if __name__ == "__main__":
    main()
