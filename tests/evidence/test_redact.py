"""Redaction rules, table-driven: what must disappear and what must stay readable."""

from __future__ import annotations

import base64
import json

import pytest

from livedrill.evidence.redact import REDACTED, redact, redact_text
from livedrill.outcomes import CheckResult, CheckStatus

TEXT_CASES = [
    # (description, text, secrets that must be gone, text that must stay)
    ("yaml block scalar userData", "cloudInitNoCloud:\n  userData: |\n    #cloud-config\n    password: changeme\n  other: kept\n", ["changeme", "cloud-config"], ["other: kept", "userData: <redacted>"]),
    ("yaml folded networkData", "networkData: >-\n  version: 2\n  secretish\nnext: 1\n", ["secretish"], ["next: 1"]),
    ("plain password line", "password: changeme\n", ["changeme"], ["password: <redacted>"]),
    ("env style assignment", "export DB_PASSWORD=hunter2\n", ["hunter2"], ["DB_PASSWORD=<redacted>"]),
    ("json text keeps its neighbours", '{"password": "a\\"b", "user": "alice"}', ['a\\"b'], ['"user": "alice"']),
    ("kubeconfig token", "    token: sha256~abcdefghijklmnop\n", ["sha256~abc"], ["token: <redacted>"]),
    ("kubeconfig client key", "    client-key-data: LS0tLS1CRUdJTiBFQw==\n", ["LS0tLS1CRUdJTiBFQw"], ["client-key-data"]),
    ("kubeconfig client cert", "    client-certificate-data: LS0tLS1CRUdJTiBDRVJU\n", ["LS0tLS1CRUdJTiBDRVJU"], []),
    ("bearer header", "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n", ["eyJhbGci"], ["Authorization:"]),
    ("bearer in a log line", "sent request with Bearer abcdefghijklmnopqrstuvwx to api\n", ["abcdefghijklmnopqrstuvwx"], ["to api"]),
    ("pem private key", "key:\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----\nafter\n", ["MHcCAQEEIB"], ["after", "BEGIN EC PRIVATE KEY"]),
    ("truncated pem private key", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI", ["MC4CAQAwBQYDK2VwBCIEI"], []),
    ("prose is left alone", "the bearer of this note has the basic password policy\n", [], ["the bearer of this note has the basic password policy"]),
    ("references are not secrets", "userDataSecretRef: {name: cloudinit}\ntokenFile: /var/run/token\nsecretName: tls\n", [], ["userDataSecretRef: {name: cloudinit}", "tokenFile: /var/run/token", "secretName: tls"]),
    ("public certificates stay", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", [], ["MIIB"]),
]


@pytest.mark.parametrize("text,gone,kept", [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_redact_text(text: str, gone: list[str], kept: list[str]) -> None:
    out = redact_text(text)
    for secret in gone:
        assert secret not in out
    for visible in kept:
        assert visible in out


SEED = "#cloud-config\npassword: changeme\n"
TREE_CASES = [
    ("cloud-init user data", {"cloudInitNoCloud": {"userData": SEED}}, {"cloudInitNoCloud": {"userData": REDACTED}}),
    ("cloud-init base64", {"cloudInitConfigDrive": {"userDataBase64": base64.b64encode(SEED.encode()).decode()}}, {"cloudInitConfigDrive": {"userDataBase64": REDACTED}}),
    ("network data", {"networkData": "version: 2", "networkDataBase64": "dmVyc2lvbjogMg=="}, {"networkData": REDACTED, "networkDataBase64": REDACTED}),
    ("kubernetes client snake_case", {"user_data": SEED}, {"user_data": REDACTED}),
    (
        "secret object keeps key names",
        {"kind": "Secret", "metadata": {"name": "ci"}, "type": "Opaque", "data": {"userdata": "I2Nsb3Vk"}, "stringData": {"pw": "x"}},
        {"kind": "Secret", "metadata": {"name": "ci"}, "type": "Opaque", "data": {"userdata": REDACTED}, "stringData": {"pw": REDACTED}},
    ),
    (
        "secret list item without kind",
        {"metadata": {"name": "ci"}, "type": "kubernetes.io/tls", "data": {"tls.key": "LS0t"}},
        {"metadata": {"name": "ci"}, "type": "kubernetes.io/tls", "data": {"tls.key": REDACTED}},
    ),
    ("configmap data stays", {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"mode": "fast"}}, {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"mode": "fast"}}),
    (
        "kubeconfig user",
        {"user": {"token": "t0k", "client-key-data": "k", "client-certificate-data": "c", "username": "drill"}},
        {"user": {"token": REDACTED, "client-key-data": REDACTED, "client-certificate-data": REDACTED, "username": "drill"}},
    ),
    ("header dict", {"headers": {"Authorization": "Basic YWxpY2U6cHc=", "Accept": "json"}}, {"headers": {"Authorization": REDACTED, "Accept": "json"}}),
    (
        "header and env lists",
        {"httpHeaders": [{"name": "X-Api-Key", "value": "k1"}, {"name": "Accept", "value": "json"}], "env": [{"name": "DB_PASSWORD", "value": "p"}]},
        {"httpHeaders": [{"name": "X-Api-Key", "value": REDACTED}, {"name": "Accept", "value": "json"}], "env": [{"name": "DB_PASSWORD", "value": REDACTED}]},
    ),
    ("empty and boolean values are no secret", {"password": "", "token": None, "ssh_pwauth": True}, {"password": "", "token": None, "ssh_pwauth": True}),
    ("numeric password", {"password": 1234}, {"password": REDACTED}),
    (
        "secret volume keeps its reference",
        {"volumes": [{"name": "ci", "secret": {"secretName": "cloudinit", "items": [{"key": "userdata", "path": "ud"}]}}]},
        {"volumes": [{"name": "ci", "secret": {"secretName": "cloudinit", "items": [{"key": "userdata", "path": "ud"}]}}]},
    ),
    ("nested secret value", {"password": {"plain": "hunter2", "name": "db"}}, {"password": {"plain": REDACTED, "name": "db"}}),
    ("secret list", {"token": ["a", "b"]}, {"token": [REDACTED, REDACTED]}),
]


@pytest.mark.parametrize("obj,expected", [c[1:] for c in TREE_CASES], ids=[c[0] for c in TREE_CASES])
def test_redact_structure(obj: dict, expected: dict) -> None:
    assert redact(obj) == expected


def test_last_applied_configuration_annotation_is_redacted_inside() -> None:
    vm = {"kind": "VirtualMachine", "spec": {"template": {"spec": {"volumes": [{"cloudInitNoCloud": {"userData": SEED}}]}}}}
    vmi = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": json.dumps(vm)}}}
    annotation = redact(vmi)["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert "changeme" not in annotation
    # Still the same document, only the secret replaced: an auditor can read the rest.
    assert json.loads(annotation)["spec"]["template"]["spec"]["volumes"][0]["cloudInitNoCloud"]["userData"] == REDACTED


def test_redact_accepts_pydantic_records_and_does_not_mutate_input() -> None:
    evidence = {"vmi": {"spec": {"volumes": [{"cloudInitNoCloud": {"userData": SEED}}]}}}
    check = CheckResult(name="live-migratable", status=CheckStatus.PASS, message="ok", evidence=evidence)
    out = redact(check)
    assert out["status"] == "pass"
    assert out["evidence"]["vmi"]["spec"]["volumes"][0]["cloudInitNoCloud"]["userData"] == REDACTED
    assert check.evidence["vmi"]["spec"]["volumes"][0]["cloudInitNoCloud"]["userData"] == SEED


def test_unserialisable_objects_are_refused() -> None:
    with pytest.raises(TypeError, match="object"):
        redact({"x": object()})
