"""The labs livedrill is tested and demonstrated on; not part of the product or its wheel.

The product never imports this package (import-linter contract in ../../pyproject.toml): `livedrill lab`
and `livedrill demo` run it as `python -m livedrill_lab ...` (see cli.py). It uses the product's
public API only.

  manager.py, kube/   the embedded KubeVirt lab: a Kubernetes API server and a virt-controller simulator
  libvirt/            the real two-host libvirt/QEMU lab, and its host administration (admin.py)
  ledger.py           the lab ledger: the transaction service the probes drive
  presets.py          the embedded lab's starting states: targeted, drain, drain-100, readiness
  demo.py             `livedrill demo`: a fresh lab, one targeted drill, the verdict beside the ground truth
"""
