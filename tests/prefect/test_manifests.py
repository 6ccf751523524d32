"""The worker's RBAC manifests: least privilege, and enough for every API call a drill makes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "livedrill" / "deploy" / "manifests"
READ = {"get", "list", "watch"}
SA = {"kind": "ServiceAccount", "name": "livedrill-worker", "namespace": "livedrill"}


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def _grants(docs: list[dict]) -> set[tuple[str, str, str, str | None]]:
    """(apiGroup, resource, verb, namespace or None for cluster-wide) for every rule of a bound role."""
    roles = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): d for d in docs
             if d["kind"] in ("Role", "ClusterRole")}
    out = set()
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["subjects"] == [SA], binding["metadata"]["name"]
        ref = binding["roleRef"]
        ns = binding["metadata"].get("namespace")
        role = roles[(ref["kind"], ref["name"], ns if ref["kind"] == "Role" else None)]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add((group, resource, verb, ns))
    return out


@pytest.mark.parametrize("name", ["worker-rbac.yaml", "worker-rbac-drain.yaml"])
def test_no_wildcards_no_secrets_no_escalation(name):
    text = (MANIFESTS / name).read_text()
    assert "'*'" not in text and '"*"' not in text and "[*]" not in text
    for group, resource, verb, _ in _grants(_docs("worker-rbac.yaml") + _docs(name)):
        assert resource not in {"secrets", "configmaps", "roles", "rolebindings", "clusterroles", "clusterrolebindings"}
        assert verb not in {"escalate", "bind", "impersonate", "deletecollection"}


def test_targeted_drills_may_only_create_and_delete_migrations_in_the_drilled_namespace():
    grants = _grants(_docs("worker-rbac.yaml"))
    writes = {g for g in grants if g[2] not in READ}
    assert writes == {("kubevirt.io", "virtualmachineinstancemigrations", "create", "banking"),
                      ("kubevirt.io", "virtualmachineinstancemigrations", "delete", "banking")}


# Every read the KubeVirt adapter's pre-flight, watch and post-checks make (livedrill/platforms/kubevirt.py).
ADAPTER_READS = [("", "nodes", "list"), ("", "nodes", "get"), ("", "pods", "list"), ("", "namespaces", "list"),
                 ("", "persistentvolumeclaims", "list"), ("", "events", "list"),
                 ("kubevirt.io", "virtualmachineinstances", "get"), ("kubevirt.io", "virtualmachineinstances", "list"),
                 ("kubevirt.io", "virtualmachineinstancemigrations", "get"),
                 ("kubevirt.io", "virtualmachineinstancemigrations", "list"), ("kubevirt.io", "virtualmachines", "get"),
                 ("kubevirt.io", "kubevirts", "list"), ("migrations.kubevirt.io", "migrationpolicies", "list")]


@pytest.mark.parametrize("group, resource, verb", ADAPTER_READS)
def test_every_read_the_adapter_makes_is_granted_cluster_wide(group, resource, verb):
    assert (group, resource, verb, None) in _grants(_docs("worker-rbac.yaml"))


def test_drain_adds_exactly_cordon_eviction_and_evacuation_cancel():
    base = _grants(_docs("worker-rbac.yaml"))
    both = _grants(_docs("worker-rbac.yaml") + _docs("worker-rbac-drain.yaml"))
    assert both - base == {("", "nodes", "patch", None), ("", "pods/eviction", "create", None),
                           ("subresources.kubevirt.io", "virtualmachineinstances/evacuate", "update", None)}
