"""The per-request probe series: a streamed, fixed-size binary file an auditor can read without livedrill.

One file per probe, ``<series_dir>/<probe-name>.series``:

1. A header: one line of UTF-8 JSON ending in ``\\n``. It names the format
   (``"format": "livedrill-probe-series", "version": 1``), the probe, the record layout (``record.struct`` is
   a Python ``struct`` format, ``record.size`` its size in bytes, ``record.fields`` the field names), the
   outcome codes, the window names, the transaction-id rule (``txid_prefix``: a transaction probe's id for
   sequence number N is ``txid_prefix + str(N)``) and one clock pairing ``clock.wall_epoch_s`` /
   ``clock.monotonic_s`` taken together at the start, so that ``wall = wall_epoch_s + (t - monotonic_s)``.
2. Then records of ``RECORD.size`` (28) bytes, little-endian, no padding, ``<IdIIIBBH``:

   ======== ====== ============================================================================
   field    type   meaning
   ======== ====== ============================================================================
   seq      u32    probe sequence number (0, 1, 2, ... in send order); 0xFFFFFFFF for a mark
   t_sched  f64    when the send was scheduled, CLOCK_MONOTONIC seconds (a mark: when it was set)
   d_start  u32    microseconds from t_sched to the actual send
   d_ack    u32    microseconds from t_sched to the write's acknowledgement; 0xFFFFFFFF if none
   d_end    u32    microseconds from t_sched to completion (success or failure)
   outcome  u8     0 ok, else a failure kind (see header ``outcomes``); 255 = a window mark
   step     u8     0 none, 1 the write / the single request / TCP exchange, 2 the read-back;
                   for a mark: the index of the window that starts (header ``windows``)
   status   u16    HTTP status of the last response, 0 if none
   ======== ====== ============================================================================

Records are appended as probes complete, so the file is in completion order up to a few
microseconds (a success is stamped when its answer arrived; a reader must not rely on strict order).
livedrill's gaps between successes take a transaction's time as its ``d_ack`` (when the write was
acknowledged), any other probe's as its ``d_end``, sorted by that time. The file is flushed at least every
``FLUSH_INTERVAL_S`` seconds. An hour at 1 kHz is about 100 MB and is never held in memory: the summary is computed by streaming the file.

Reading it with only the standard library::

    import json, struct
    with open("p.series", "rb") as f:
        header = json.loads(f.readline())
        rec = struct.Struct(header["record"]["struct"])
        while chunk := f.read(rec.size):
            seq, t_sched, d_start, d_ack, d_end, outcome, step, status = rec.unpack(chunk)
"""

from __future__ import annotations

import enum
import json
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

FORMAT_NAME = "livedrill-probe-series"
FORMAT_VERSION = 1
RECORD = struct.Struct("<IdIIIBBH")
RECORD_FIELDS = ["seq", "t_sched", "d_start", "d_ack", "d_end", "outcome", "step", "status"]
MARK_SEQ = 0xFFFFFFFF
NO_ACK = 0xFFFFFFFF
MARK_OUTCOME = 255
MAX_DELTA_US = 0xFFFFFFFE
FLUSH_INTERVAL_S = 1.0
WINDOWS = ("baseline", "during", "after")


class Outcome(enum.IntEnum):
    """How one probe ended. The names are the failure kinds of the report."""

    OK = 0
    TIMEOUT = 1  # no answer within the probe's timeout
    CONNECT = 2  # connection refused / unreachable
    TLS = 3  # TLS handshake or certificate failure
    RESET = 4  # connection dropped mid-exchange
    STATUS = 5  # an HTTP status outside expect_status
    BODY_MISMATCH = 6  # the body is not the expected JSON, or a TCP reply lacks `expect`
    NOT_FOUND = 7  # read-back of an acknowledged write said "not found"
    PROTOCOL = 8  # malformed HTTP
    IN_FLIGHT_LIMIT = 9  # not sent: max_in_flight probes were already waiting
    UNRESOLVED_AT_STOP = 10  # still in flight when the session stopped waiting
    ABANDONED = 11  # not delivered: a hunter's handshake was lost during an outage and given up (not a failure)

    @property
    def kind(self) -> str:
        return self.name.lower().replace("_", "-")


class Step(enum.IntEnum):
    NONE = 0
    WRITE = 1  # the write, the single HTTP request, or the TCP exchange
    READ = 2


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """One decoded record, times in CLOCK_MONOTONIC seconds."""

    seq: int
    t_sched: float
    t_start: float
    t_ack: float | None
    t_end: float
    outcome: int
    step: int
    status: int

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK

    @property
    def latency_ms(self) -> float:
        return (self.t_end - self.t_start) * 1000.0


@dataclass(frozen=True, slots=True)
class WindowMark:
    window: str
    t: float


def _delta_us(t: float, t_sched: float) -> int:
    return min(MAX_DELTA_US, max(0, round((t - t_sched) * 1e6)))


def safe_file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "probe"


class SeriesWriter:
    """Appends records to one probe's series file. Used from the probe thread only."""

    def __init__(self, path: Path, header: dict, clock_pair: tuple[float, float]):
        self.path = path
        wall, mono = clock_pair
        full = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            **header,
            "clock": {"source": "CLOCK_MONOTONIC", "unit": "s", "wall_epoch_s": wall, "monotonic_s": mono},
            "record": {"struct": RECORD.format, "size": RECORD.size, "fields": RECORD_FIELDS,
                       "time_deltas": "microseconds after t_sched", "no_ack": NO_ACK, "mark_seq": MARK_SEQ},
            "outcomes": {str(o.value): o.kind for o in Outcome} | {str(MARK_OUTCOME): "window-mark"},
            "windows": list(WINDOWS),
        }
        self._file: BinaryIO = open(path, "wb")
        self._file.write(json.dumps(full, sort_keys=True).encode() + b"\n")
        self._last_flush = time.monotonic()
        self.records = 0

    def append(self, seq: int, t_sched: float, t_start: float, t_ack: float | None, t_end: float,
               outcome: int, step: int, status: int) -> None:
        d_ack = NO_ACK if t_ack is None else _delta_us(t_ack, t_sched)
        self._file.write(RECORD.pack(seq, t_sched, _delta_us(t_start, t_sched), d_ack, _delta_us(t_end, t_sched),
                                     outcome, step, status))
        self.records += 1
        if t_end - self._last_flush >= FLUSH_INTERVAL_S:
            self._file.flush()
            self._last_flush = t_end

    def mark(self, window: str, t: float) -> None:
        self._file.write(RECORD.pack(MARK_SEQ, t, 0, NO_ACK, 0, MARK_OUTCOME, WINDOWS.index(window), 0))

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()


def read_header(path: Path) -> dict:
    with open(path, "rb") as f:
        header = json.loads(f.readline())
    if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a {FORMAT_NAME} v{FORMAT_VERSION} file")
    return header


def iter_raw(path: Path, chunk_records: int = 8192) -> Iterator[tuple]:
    """Stream the raw record tuples (fields as in RECORD_FIELDS), marks included, a chunk at a time."""
    with open(path, "rb") as f:
        f.readline()
        size = RECORD.size
        while True:
            chunk = f.read(size * chunk_records)
            if not chunk:
                return
            usable = len(chunk) - len(chunk) % size  # a torn tail (crash mid-write) is ignored
            yield from RECORD.iter_unpack(chunk[:usable])
            if usable < len(chunk):
                return


def iter_series(path: Path) -> Iterator[ProbeRecord | WindowMark]:
    """Stream a series file as decoded records and window marks, in file order."""
    for seq, t_sched, d_start, d_ack, d_end, outcome, step, status in iter_raw(path):
        if outcome == MARK_OUTCOME:
            yield WindowMark(WINDOWS[step], t_sched)
            continue
        yield ProbeRecord(
            seq=seq,
            t_sched=t_sched,
            t_start=t_sched + d_start / 1e6,
            t_ack=None if d_ack == NO_ACK else t_sched + d_ack / 1e6,
            t_end=t_sched + d_end / 1e6,
            outcome=outcome,
            step=step,
            status=status,
        )
