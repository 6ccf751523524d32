"""A probe's credentials reach every process that reopens the run: secret headers are read from their source
(an environment variable or a file) where they are sent; only their source is written in the evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from livedrill.errors import InputError
from livedrill.spec import SecretHeader, parse_spec
from livedrill.stages.session import DrillSession

REPO = Path(__file__).resolve().parents[2]
TOKEN = "eyJhbGciOiJFZERTQSJ9.drill-ledger-credential"


def _spec_text(tmp_path: Path) -> str:
    return f"""\
name: t
cluster: lab
platform: {{kind: kubevirt, kubeconfig: /tmp/k}}
vms: [{{namespace: banking, name: banking-core-vm}}]
mode: {{kind: targeted, target_node: node-2}}
slo: {{max_downtime_ms: 100, p99_latency_ms: 5}}
evidence: {{dir: {tmp_path / "evidence"}}}
probes:
  - name: ledger
    vm: banking/banking-core-vm
    kind: transaction
    write:
      method: POST
      url: http://127.0.0.1:9/transfers
      json: {{id: "{{txid}}"}}
      secret_headers:
        - {{name: Authorization, env: LEDGER_TOKEN, prefix: "Bearer "}}
        - {{name: X-Api-Key, file: {tmp_path / "api-key"}}}
    read:
      url: http://127.0.0.1:9/transfers/{{txid}}
      headers: {{Authorization: "Bearer {TOKEN}"}}
"""


def _headers_in_a_fresh_process(run_dir: Path, env: dict[str, str]) -> dict:
    code = ("import json, sys; from livedrill.stages.session import DrillSession; "
            "probe = DrillSession.reopen(sys.argv[1]).spec.probes[0]; "
            "print(json.dumps({'write': probe.write.resolved_headers(), 'read': probe.read.resolved_headers()}))")
    done = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True, timeout=60,
                          env={**env, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_fresh_process_reads_the_secret_headers_from_their_source(tmp_path, monkeypatch):
    (tmp_path / "api-key").write_text("key-from-a-mounted-secret\n")
    monkeypatch.setenv("LEDGER_TOKEN", TOKEN)
    text = _spec_text(tmp_path)
    session = DrillSession.create(parse_spec(text), text)
    archived = (session.run.path / "spec.yaml").read_text()
    assert "env: LEDGER_TOKEN" in archived and TOKEN not in archived

    env = {k: v for k, v in os.environ.items() if k != "LEDGER_TOKEN"}
    headers = _headers_in_a_fresh_process(session.run.path, {**env, "LEDGER_TOKEN": TOKEN})
    assert headers["write"] == {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": "key-from-a-mounted-secret"}
    # A secret written in `headers` is redacted in the evidence: only the creating process still has it.
    assert headers["read"]["Authorization"] != f"Bearer {TOKEN}"
    assert DrillSession.reopen(session.run.path).spec.probes[0].read.resolved_headers()["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("header, words", [
    ({"name": "Authorization", "env": "LIVEDRILL_TEST_UNSET_VARIABLE"}, "LIVEDRILL_TEST_UNSET_VARIABLE is not set"),
    ({"name": "X-Api-Key", "file": "/nonexistent/api-key"}, "cannot read /nonexistent/api-key"),
])
def test_a_missing_source_is_named(header, words):
    with pytest.raises(InputError, match=words):
        SecretHeader.model_validate(header).resolve()


@pytest.mark.parametrize("header", [{"name": "A"}, {"name": "A", "env": "X", "file": "/f"}])
def test_a_secret_header_has_exactly_one_source(header):
    with pytest.raises(ValueError, match="exactly one of env or file"):
        SecretHeader.model_validate(header)
