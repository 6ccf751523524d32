"""HTTP plumbing shared by pushes and queries: headers, payload-scaled timeouts, classified retries."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx

from livedrill import __version__
from livedrill.errors import PlatformError, RetryPolicy, call_with_retry, is_transient
from livedrill.metrics.config import HttpEndpoint

USER_AGENT = f"livedrill/{__version__}"
_ERROR_BODY_CHARS = 500


class MetricsEndpointError(PlatformError):
    """A metrics store refused or did not answer; `transient` says whether a later retry may succeed."""


def request_headers(endpoint: HttpEndpoint) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, **endpoint.headers}
    if endpoint.bearer_token_file is not None:
        try:
            token = endpoint.bearer_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:  # a missing credential is this endpoint's failure, not the whole export's
            raise MetricsEndpointError(f"cannot read bearer_token_file {endpoint.bearer_token_file}: {exc.strerror}",
                                       transient=False) from exc
        headers["Authorization"] = f"Bearer {token}"
    return headers


def payload_timeout(endpoint: HttpEndpoint, base_s: float, per_mib_s: float, body_bytes: int) -> httpx.Timeout:
    """Pure: the read/write budget grows with the body; connecting has its own fixed budget."""
    total = base_s + per_mib_s * body_bytes / 2**20
    return httpx.Timeout(total, connect=endpoint.connect_timeout_s)


def make_client(endpoint: HttpEndpoint) -> httpx.Client:
    verify: bool | ssl.SSLContext = ssl.create_default_context(cafile=str(endpoint.tls_ca_bundle)) if endpoint.tls_ca_bundle else True
    return httpx.Client(verify=verify, follow_redirects=False)


def send_with_retry(endpoint: HttpEndpoint, send: Callable[[], httpx.Response], describe: str) -> httpx.Response:
    """Run `send` until it answers 2xx; transient failures are retried to the endpoint's deadline.

    Whatever finally fails is raised as MetricsEndpointError carrying the status and the store's own
    message (Prometheus says why it refused a sample, e.g. "out of bounds").
    """

    def attempt() -> httpx.Response:
        response = send()
        response.raise_for_status()
        return response

    try:
        return call_with_retry(attempt, RetryPolicy(deadline_s=endpoint.retry_deadline_s), describe=describe)
    except httpx.HTTPStatusError as exc:
        body = exc.response.text[:_ERROR_BODY_CHARS].strip()
        raise MetricsEndpointError(f"{describe}: HTTP {exc.response.status_code} from {exc.request.url}: {body}",
                                   status=exc.response.status_code, transient=is_transient(exc)) from exc
    except httpx.TransportError as exc:
        raise MetricsEndpointError(f"{describe}: {type(exc).__name__}: {exc}", transient=True) from exc
