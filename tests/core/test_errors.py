"""One classifier for errors; the retry honours Retry-After and stops at the deadline; permanent errors raise at once."""

import ssl

import httpx
import pytest

from livedrill.errors import PlatformError, PlatformUnreachable, RetryPolicy, backoff_s, call_with_retry, is_transient


def _http_error(status):
    request = httpx.Request("GET", "http://127.0.0.1/")
    return httpx.HTTPStatusError("x", request=request, response=httpx.Response(status, request=request))


@pytest.mark.parametrize("exc, transient", [
    (PlatformError("x", status=500), True),
    (PlatformError("x", status=503), True),
    (PlatformError("x", status=429), True),
    (PlatformError("x", status=408), True),
    (PlatformError("x", status=404), False),
    (PlatformError("x", status=409), False),
    (PlatformError("x", status=422), False),
    (PlatformError("x", status=500, transient=False), False),
    (PlatformUnreachable("down"), True),
    (ConnectionRefusedError(), True),
    (TimeoutError(), True),
    (httpx.ConnectError("refused"), True),
    (_http_error(502), True),
    (_http_error(400), False),
    (ValueError("bug"), False),
    (KeyboardInterrupt(), False),
])
def test_classifier(exc, transient):
    assert is_transient(exc) is transient


def test_tls_verification_failure_is_permanent():
    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed: self-signed certificate")
        except ssl.SSLError as inner:
            raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]") from inner
    except httpx.ConnectError as exc:
        assert is_transient(exc) is False


@pytest.mark.parametrize("attempt, hint, jitter, expected", [
    (1, None, 0.0, 0.1),
    (1, None, 0.999, 0.1999),
    (3, None, 0.0, 0.4),
    (20, None, 0.0, 2.5),      # capped at max_backoff_s, then jittered
    (1, 1.5, 0.5, 1.5),        # Retry-After honoured as given
    (1, 600.0, 0.0, 20.0),     # ...but bounded
])
def test_backoff(attempt, hint, jitter, expected):
    policy = RetryPolicy(deadline_s=10, initial_backoff_s=0.2, max_backoff_s=5.0)
    assert backoff_s(attempt, policy, hint, jitter) == pytest.approx(expected, rel=1e-3)


def test_transient_failures_are_retried_until_success():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise PlatformError("busy", status=429, retry_after_s=0.01)
        return "ok"

    assert call_with_retry(flaky, RetryPolicy(deadline_s=5)) == "ok"
    assert len(calls) == 3


def test_permanent_failure_is_not_retried():
    calls = []

    def missing():
        calls.append(1)
        raise PlatformError("not found", status=404)

    with pytest.raises(PlatformError):
        call_with_retry(missing, RetryPolicy(deadline_s=5))
    assert len(calls) == 1


def test_retry_stops_at_the_deadline():
    calls = []

    def down():
        calls.append(1)
        raise PlatformUnreachable("connection refused")

    with pytest.raises(PlatformUnreachable):
        call_with_retry(down, RetryPolicy(deadline_s=0.3, initial_backoff_s=0.05, max_backoff_s=0.05))
    assert 2 <= len(calls) <= 20
