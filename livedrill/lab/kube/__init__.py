"""An embedded KubeVirt lab: a Kubernetes-API server on 127.0.0.1 and a simulated virt-controller.

The real `kubernetes` client and `kubectl` talk to it unchanged. Everything is in one process
(`python -m livedrill.lab.kube`), started by `livedrill.lab.manager`.
"""
