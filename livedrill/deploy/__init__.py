"""How drills are deployed and operated: schedules, the on-demand request form, reports. No Prefect here.

Everything in this package is pure (inputs in, values out) so the Prefect layer only sequences and
publishes; `livedrill/deploy/manifests/` holds the Kubernetes manifests of a production worker.
"""
