"""RFC 3161 trusted timestamps of sealed manifests.

A timestamp token from a Time-Stamping Authority proves MANIFEST.json existed at the TSA's time,
independent of the signing key and of the clock of the host that sealed it. It is stored next to
the manifest as `MANIFEST.tsr` (the DER TimeStampResp, which `openssl ts -verify` reads), outside
the manifest it covers, so a timestamp can be added after sealing (the TSA was down) without
touching the signed record. Requests carry a nonce and ask for the TSA certificate in the reply.
Replies are parsed as strict DER: a TSA that sends its certificate chain as an unsorted SET OF
(OpenSSL's `ts -reply` with `certs =`) is refused with the parser's message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from cryptography import x509
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder, VerificationError, VerifierBuilder, decode_timestamp_response
from rfc3161_client.tsp import PKIStatus

from livedrill.errors import RetryPolicy, call_with_retry

TIMESTAMP_QUERY_TYPE = "application/timestamp-query"


class TimestampError(Exception):
    """The TSA did not give a usable timestamp (unreachable, refused, or a reply that does not match the request)."""


@dataclass(frozen=True)
class TimestampAuthority:
    """Where to ask for timestamps, and how long one request may take in all (retries included)."""

    url: str
    timeout_s: float
    deadline_s: float


@dataclass(frozen=True)
class TimestampCheck:
    """What a stored token says about a manifest: its TSA time, and a problem or None."""

    gen_time: datetime | None
    problem: str | None


def _post(tsa: TimestampAuthority, body: bytes) -> bytes:
    response = httpx.post(tsa.url, content=body, headers={"Content-Type": TIMESTAMP_QUERY_TYPE}, timeout=tsa.timeout_s)
    response.raise_for_status()
    return response.content


def request_timestamp(data: bytes, tsa: TimestampAuthority) -> bytes:
    """A DER TimeStampResp over SHA-256(data), checked against the request before it is returned."""
    request = TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256).nonce(nonce=True).cert_request(cert_request=True).build()
    try:
        reply = call_with_retry(lambda: _post(tsa, request.as_bytes()), RetryPolicy(deadline_s=tsa.deadline_s), describe=f"timestamp from {tsa.url}")
    except httpx.HTTPError as exc:
        raise TimestampError(f"{tsa.url}: no timestamp ({type(exc).__name__}: {exc})") from exc
    try:
        response = decode_timestamp_response(reply)
    except ValueError as exc:
        raise TimestampError(f"{tsa.url}: the reply is not an RFC 3161 TimeStampResp ({exc})") from exc
    if PKIStatus(response.status) not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise TimestampError(f"{tsa.url}: timestamp refused (status {response.status}: {'; '.join(response.status_string)})")
    if response.tst_info.nonce != request.nonce:
        raise TimestampError(f"{tsa.url}: the reply's nonce does not match the request (a replayed or foreign reply)")
    if response.tst_info.message_imprint.message != hashlib.sha256(data).digest():
        raise TimestampError(f"{tsa.url}: the reply timestamps other data than the manifest")
    return reply


def check_timestamp(token: bytes, data: bytes, *, roots: list[x509.Certificate] | None, sealed_at: datetime, clock_skew: timedelta) -> TimestampCheck:
    """Judge a stored token against the manifest bytes: imprint always; TSA signature and chain when `roots` are given.

    A TSA time earlier than the seal (beyond `clock_skew`) is a problem: the manifest cannot have been
    timestamped before it was written, so the token belongs to another manifest or the clocks lie.
    """
    try:
        response = decode_timestamp_response(token)
    except ValueError as exc:
        return TimestampCheck(None, f"not an RFC 3161 timestamp reply ({exc})")
    info = response.tst_info
    if info.message_imprint.message != hashlib.sha256(data).digest():
        return TimestampCheck(info.gen_time, "the timestamp covers other bytes than this MANIFEST.json: the manifest changed after it was timestamped")
    if roots:
        try:
            builder = VerifierBuilder()
            for root in roots:
                builder = builder.add_root_certificate(root)
            builder.build().verify_message(response, data)
        except VerificationError as exc:
            return TimestampCheck(info.gen_time, f"the TSA signature does not verify against the trusted TSA roots ({exc})")
    gen_time = info.gen_time
    if gen_time + clock_skew < sealed_at:
        return TimestampCheck(gen_time, f"TSA time {gen_time.isoformat()} is before the seal at {sealed_at.isoformat()}")
    return TimestampCheck(gen_time, None)
