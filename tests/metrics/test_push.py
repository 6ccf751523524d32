"""Pushing: the requests each sink gets (pure), and retries/classification against a real HTTP server."""

from __future__ import annotations

import base64
import ssl
import threading
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from livedrill.evidence.keys import Signer
from livedrill_lab.kube.tls import issue_server_certificate
from livedrill.metrics.config import MetricsConfig, PushSink
from livedrill.metrics.encode import snappy_decompress
from livedrill.metrics.export import export_archive, export_run
from livedrill.metrics.http import MetricsEndpointError, payload_timeout
from livedrill.metrics.push import build_requests, newest_per_series, push_samples, with_extra_labels
from livedrill.metrics.samples import Sample
from tests.metrics.sample_runs import QUARTERLY, write_sample_run


def s(name="livedrill_probe_gap_seconds", value=1.0, ts=1000, **labels):
    return Sample(name=name, labels={"cluster": "prod-core-a", "drill": "d1", **labels}, value=value, timestamp_ms=ts)


def test_extra_labels_never_override_the_samples_own():
    out = with_extra_labels([s(env="sample")], {"env": "prod", "tenant": "bank"})
    assert out[0].labels["env"] == "sample" and out[0].labels["tenant"] == "bank"


def test_newest_per_series_keeps_the_last_value():
    got = newest_per_series([s(value=0.04, ts=1000), s(value=0.35, ts=3000), s(value=0.2, ts=2000), s(value=5, ts=1, probe="x")])
    assert sorted((x.value, x.timestamp_ms) for x in got) == [(0.35, 3000), (5.0, 1)]


REQUEST_CASES = {
    "remote write: one snappy protobuf POST": (
        PushSink(kind="remote_write", url="http://127.0.0.1:1/api/v1/write"), [s(), s(ts=2000)],
        [("POST", "http://127.0.0.1:1/api/v1/write", "application/x-protobuf", 2, 1)]),
    "VictoriaMetrics import: timestamped text": (
        PushSink(kind="victoriametrics_import", url="http://127.0.0.1:1/insert/42/prometheus/api/v1/import/prometheus"),
        [s(), s(ts=2000)],
        [("POST", "http://127.0.0.1:1/insert/42/prometheus/api/v1/import/prometheus", "text/plain; version=0.0.4", 2, 1)]),
    "Pushgateway: one PUT per cluster and drill, newest values, base64 for unsafe path values": (
        PushSink(kind="pushgateway", url="http://127.0.0.1:1", job="livedrill"),
        [s(), s(ts=2000), Sample(name="livedrill_drill_result", labels={"cluster": "eu/west 1", "drill": "d1"}, value=1, timestamp_ms=5)],
        [("PUT", "http://127.0.0.1:1/metrics/job/livedrill/cluster/prod-core-a/drill/d1", "text/plain; version=0.0.4", 1, 1),
         ("PUT", "http://127.0.0.1:1/metrics/job/livedrill/cluster@base64/" + base64.urlsafe_b64encode(b"eu/west 1").decode().rstrip("=")
          + "/drill/d1", "text/plain; version=0.0.4", 1, 1)]),
    "nothing to push": (PushSink(kind="remote_write", url="http://127.0.0.1:1/w"), [], []),
}


@pytest.mark.parametrize("sink, samples, expected", REQUEST_CASES.values(), ids=REQUEST_CASES.keys())
def test_build_requests(sink, samples, expected):
    got = build_requests(samples, sink)
    assert sorted((r.method, r.url, r.headers["Content-Type"], r.samples, r.series) for r in got) == sorted(expected)


def test_pushgateway_body_has_no_timestamps():
    (req,) = build_requests([s(value=0.04, ts=1000), s(value=0.35, ts=3000)], PushSink(kind="pushgateway", url="http://h:9091"))
    body = req.body.decode()
    assert body.rstrip().endswith(" 0.35")
    assert "3000" not in body


@pytest.mark.parametrize("base_s, per_mib_s, body, expected_read", [
    (10.0, 5.0, 0, 10.0), (10.0, 5.0, 2**20, 15.0), (10.0, 5.0, 10 * 2**20, 60.0), (3.0, 0.0, 50 * 2**20, 3.0),
])
def test_payload_timeout_scales_with_the_body(base_s, per_mib_s, body, expected_read):
    sink = PushSink(kind="remote_write", url="http://h/w", connect_timeout_s=2.5)
    timeout = payload_timeout(sink, base_s, per_mib_s, body)
    assert (timeout.read, timeout.write, timeout.connect) == (expected_read, expected_read, 2.5)


class ScriptedStore:
    """A real HTTP server on 127.0.0.1:0 answering each request with the next scripted status."""

    def __init__(self, statuses: list[int], tls: tuple[Path, Path] | None = None):
        self.statuses = list(statuses)
        self.requests: list[tuple[str, str, dict, bytes]] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                store.requests.append((self.command, self.path, dict(self.headers), body))
                status = store.statuses.pop(0) if len(store.statuses) > 1 else store.statuses[0]
                message = b"out of bounds" if status == 400 else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)

            do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_a_transient_refusal_is_retried():
    with ScriptedStore([503, 503, 204]) as store:
        sink = PushSink(kind="remote_write", url=store.url + "/api/v1/write", retry_deadline_s=10, headers={"X-Scope-OrgID": "bank"})
        result = push_samples([s(), s(ts=2000)], sink)
    assert len(store.requests) == 3 and result.samples == 2
    method, path, headers, body = store.requests[-1]
    assert (method, path, headers["Content-Encoding"], headers["X-Scope-OrgID"]) == ("POST", "/api/v1/write", "snappy", "bank")
    assert headers["User-Agent"].startswith("livedrill/")
    assert b"livedrill_probe_gap_seconds" in snappy_decompress(body)


def test_a_permanent_refusal_is_not_retried():
    with ScriptedStore([400]) as store:
        with pytest.raises(MetricsEndpointError) as err:
            push_samples([s()], PushSink(kind="victoriametrics_import", url=store.url + "/api/v1/import/prometheus", retry_deadline_s=10))
    assert len(store.requests) == 1
    assert (err.value.status, err.value.transient) == (400, False)
    assert "out of bounds" in str(err.value)


def test_an_unreachable_store_gives_up_at_the_deadline():
    with ScriptedStore([204]) as store:
        url = store.url
    with pytest.raises(MetricsEndpointError) as err:  # the server is closed: connection refused
        push_samples([s()], PushSink(kind="remote_write", url=url + "/api/v1/write", retry_deadline_s=0.5, connect_timeout_s=0.5))
    assert err.value.transient is True


def test_bearer_token_is_read_from_its_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with ScriptedStore([204]) as store:
        push_samples([s()], PushSink(kind="pushgateway", url=store.url, bearer_token_file=token))
    assert store.requests[0][2]["Authorization"] == "Bearer s3cret"


def test_https_with_the_banks_ca_bundle(tmp_path):
    _ca_pem, cert, key = issue_server_certificate(tmp_path, "127.0.0.1")
    with ScriptedStore([204], tls=(cert, key)) as store:
        push_samples([s()], PushSink(kind="remote_write", url=store.url + "/api/v1/write", tls_ca_bundle=tmp_path / "ca.crt"))
        with pytest.raises(MetricsEndpointError, match="CERTIFICATE_VERIFY_FAILED"):  # the system CAs do not know the bank's
            push_samples([s()], PushSink(kind="remote_write", url=store.url + "/api/v1/write", retry_deadline_s=0.2))
    assert len(store.requests) == 1


def test_a_missing_token_file_fails_only_that_push(tmp_path):
    with pytest.raises(MetricsEndpointError, match="bearer_token_file") as err:
        push_samples([s()], PushSink(kind="pushgateway", url="http://127.0.0.1:9", bearer_token_file=tmp_path / "absent"))
    assert err.value.transient is False


def test_export_archive_re_exports_sealed_runs_only(tmp_path):
    signer = Signer.generate()
    sealed = [write_sample_run(tmp_path / "archive", d, signer) for d in QUARTERLY[:2]]
    write_sample_run(tmp_path / "archive", QUARTERLY[2], None)  # still open: not exported
    with ScriptedStore([204]) as store:
        reports = export_archive(tmp_path / "archive", MetricsConfig(push=[PushSink(kind="victoriametrics_import", url=store.url)]))
    assert [r.run_dir for r in reports] == [str(p) for p in sealed]
    assert all(r.ok for r in reports) and len(store.requests) == 2
    assert all(f'run_id="{p.name}"'.encode() in body for p, (_m, _path, _h, body) in zip(sealed, store.requests))


def test_export_reports_each_sink(tmp_path):
    """One sink refusing does not stop the other; both outcomes are in the report."""
    run_dir = write_sample_run(tmp_path / "archive", QUARTERLY[0], Signer.generate())
    with ScriptedStore([204]) as good, ScriptedStore([400]) as bad:
        config = MetricsConfig(push=[PushSink(kind="remote_write", url=bad.url + "/api/v1/write", retry_deadline_s=5),
                                     PushSink(kind="pushgateway", url=good.url, retry_deadline_s=5)])
        report = export_run(run_dir, config)
    assert not report.ok
    refused, pushed = report.sinks
    assert (refused.error is not None, refused.transient, refused.pushed) == (True, False, None)
    assert pushed.error is None and pushed.pushed.requests == 1
    assert good.requests[0][1] == "/metrics/job/livedrill/cluster/prod-core-a/drill/banking-core-quarterly"


@pytest.mark.parametrize("config", [
    {"push": [{"kind": "remote_write", "url": "ftp://x"}]},
    {"push": [{"kind": "carrier-pigeon", "url": "http://x"}]},
    {"push": [{"kind": "remote_write", "url": "http://x", "password": "no"}]},
    {"kubevirt": {"url": "http://x", "max_points_per_series": 20000}},
])
def test_config_rejects(config):
    with pytest.raises(ValueError):
        MetricsConfig.model_validate(config)


def test_the_documented_example_validates():
    import yaml

    from livedrill.metrics import config

    example = yaml.safe_load(config.__doc__.split("\n\n", 1)[1])["metrics"]
    parsed = MetricsConfig.model_validate(example)
    assert [p.kind for p in parsed.push] == ["victoriametrics_import", "remote_write"]
    assert parsed.kubevirt.selector == {"cluster": "prod-core-a"}
