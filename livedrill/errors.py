"""One classifier for errors, and the retry policy for single platform calls built on it.

Transient: the same call may succeed if repeated (connection refused or reset, timeouts, HTTP 5xx,
HTTP 429 when it means "come back later"). Permanent: repeating cannot help (4xx other than 429 and
408, bad input, a missing object). A 429 from KubeVirt's eviction webhook is NOT an error at all —
it means "evacuation triggered"; the drain code reads it before this classifier sees it.
"""

from __future__ import annotations

import random
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import httpx
import tenacity

T = TypeVar("T")


class DrillError(Exception):
    """Base of livedrill's own errors."""


class InputError(DrillError):
    """Bad input (spec, unknown VM, impossible target): nothing was changed. CLI exit 2."""


class PlatformError(DrillError):
    """A platform API answered with an error. Adapters raise this instead of their library's exceptions."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None,
                 retry_after_s: float | None = None, transient: bool | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s
        self._transient = transient

    @property
    def transient(self) -> bool:
        if self._transient is not None:
            return self._transient
        return is_transient_status(self.status)


class UndoNotObserved(PlatformError):
    """An undo was requested but its effect was not observed within the spec's abort budget.

    Permanent: the journal records it as a failed undo with `manual_action`, what the operator must do by hand.
    """

    def __init__(self, message: str, *, manual_action: str):
        super().__init__(message, transient=False)
        self.manual_action = manual_action


class PlatformUnreachable(PlatformError):
    def __init__(self, message: str):
        super().__init__(message, transient=True)


def is_transient_status(status: int | None) -> bool:
    if status is None:
        return True  # no answer at all: connection-level
    return status in (408, 429) or status >= 500


def _tls_failure(exc: BaseException) -> bool:
    """A certificate or TLS-protocol failure anywhere in the exception's chain: repeating cannot fix it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError) and not isinstance(
                current, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)):  # those are a dropped line
            return True
        current = current.__cause__ or current.__context__
    return False


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return False
    if _tls_failure(exc):
        return False
    if isinstance(exc, PlatformError):
        return exc.transient
    if isinstance(exc, httpx.HTTPStatusError):
        return is_transient_status(exc.response.status_code)
    if isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError, socket.timeout)):
        return True
    return False


def retry_after_s(exc: BaseException) -> float | None:
    if isinstance(exc, PlatformError):
        return exc.retry_after_s
    if isinstance(exc, httpx.HTTPStatusError):
        return parse_retry_after(exc.response.headers.get("Retry-After"))
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not used by the Kubernetes API server)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying one call; the deadline comes from the step's budget."""

    deadline_s: float
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0


def backoff_s(attempt: int, policy: RetryPolicy, server_hint_s: float | None, jitter: float) -> float:
    """Next wait: the server's Retry-After when it gave one, else capped exponential backoff; jitter in [0, 1)."""
    if server_hint_s is not None:
        return min(server_hint_s, policy.max_backoff_s * 4)
    base = min(policy.max_backoff_s, policy.initial_backoff_s * (2 ** max(0, attempt - 1)))
    return base * (0.5 + jitter / 2)


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, *, describe: str = "call") -> T:
    """Run `fn`, retrying transient failures until the policy's deadline; permanent ones raise at once."""

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return backoff_s(state.attempt_number, policy, retry_after_s(exc) if exc else None, random.random())

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=wait,
        stop=tenacity.stop_after_delay(policy.deadline_s),
        sleep=time.sleep,
        reraise=True,
    )
    return retrying(fn)
