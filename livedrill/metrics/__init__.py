"""Drill metrics: samples read from a run directory, pushed to Prometheus-compatible stores, and
KubeVirt's own migration metrics read back for the evidence. No Prefect, no kubernetes here."""
