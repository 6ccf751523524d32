"""What the lab serves for KubeVirt kinds validates against KubeVirt's own OpenAPI document (tests/kubevirt_openapi.py)."""

from __future__ import annotations

import time

import jsonschema
import pytest

from tests.kubevirt_openapi import definitions as openapi_definitions

pytestmark = pytest.mark.e2e

GROUP, VERSION, NS = "kubevirt.io", "v1", "banking"


@pytest.fixture(scope="module")
def definitions():
    return openapi_definitions()


def validate(definitions, name: str, obj: dict) -> None:
    schema = {"$ref": f"#/definitions/{name}", "definitions": definitions}
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(obj), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{name} {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])


def test_validator_rejects_a_malformed_object(definitions):
    bad = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration", "metadata": {"name": "x"},
           "spec": {"vmiName": 7}}
    with pytest.raises(AssertionError, match="vmiName"):
        validate(definitions, "v1.VirtualMachineInstanceMigration", bad)


def test_served_kubevirt_objects_validate(definitions, custom, lab):
    custom.create_cluster_custom_object("migrations.kubevirt.io", "v1alpha1", "migrationpolicies", {
        "apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy", "metadata": {"name": "core"},
        "spec": {"bandwidthPerMigration": "128Mi", "completionTimeoutPerGiB": 800,
                 "selectors": {"virtualMachineInstanceSelector": {"tier": "core"}}}})
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances", "banking-core-vm",
                                          {"metadata": {"annotations": {"lab.livedrill.io/memory": "32Mi"}}})
    vmim = custom.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstancemigrations", {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"generateName": "drill-"}, "spec": {"vmiName": "banking-core-vm"}})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        vmim = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstancemigrations",
                                                   vmim["metadata"]["name"])
        if vmim.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(0.05)
    assert vmim["status"]["phase"] == "Succeeded"
    vmi = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances", "banking-core-vm")
    assert vmi["status"]["migrationState"]["migrationPolicyName"] == "core"

    served = {
        "v1.VirtualMachineInstanceMigration": vmim,
        "v1.VirtualMachineInstance": vmi,
        "v1.VirtualMachine": custom.get_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines",
                                                                 "banking-core-vm"),
        "v1.KubeVirt": custom.get_namespaced_custom_object(GROUP, VERSION, "kubevirt", "kubevirts", "kubevirt"),
        "v1alpha1.MigrationPolicy": custom.get_cluster_custom_object("migrations.kubevirt.io", "v1alpha1",
                                                                     "migrationpolicies", "core"),
        "v1.VirtualMachineInstanceList": custom.list_cluster_custom_object(GROUP, VERSION, "virtualmachineinstances"),
        "v1.VirtualMachineInstanceMigrationList": custom.list_namespaced_custom_object(
            GROUP, VERSION, NS, "virtualmachineinstancemigrations"),
    }
    for name, obj in served.items():
        validate(definitions, name, obj)
