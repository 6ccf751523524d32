"""Run the lab's API server and virt-controller: `python -m livedrill_lab.kube --state-dir DIR ...`.

The bearer token comes from the environment (LIVEDRILL_LAB_TOKEN), never from argv. Once serving, it
writes DIR/kubeconfig and DIR/api-ready ({"pid", "port", "metrics_port"}: the API, and the simulated
virt-handler's Prometheus endpoint `http://HOST:metrics_port/metrics`, both on ports the kernel picked unless
--port is given for the API). SIGTERM or SIGINT stops it cleanly (any paused workload is continued first).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import ssl
import sys
import threading
from pathlib import Path

from livedrill_lab.kube import resources
from livedrill_lab.kube.config import ControllerConfig
from livedrill_lab.kube.controller import VirtController
from livedrill_lab.kube.handler_metrics import HandlerMetricsServer
from livedrill_lab.kube.scheduling import start_new_vmis
from livedrill_lab.kube.server import LabApiServer
from livedrill_lab.kube.store import Store
from livedrill_lab.kube.tls import issue_server_certificate
from livedrill_lab.presets import LEDGER_ADDRESS_ANNOTATION, Preset, load_preset

TOKEN_ENV = "LIVEDRILL_LAB_TOKEN"
CONTEXT = "livedrill-lab"
PARENT_CHECK_INTERVAL_S = 0.5


def kubeconfig_text(server_url: str, token: str, ca_pem: bytes) -> str:
    """A kubeconfig for the lab (JSON is valid YAML, and needs no YAML library here)."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT, "preferences": {},
        "clusters": [{"name": CONTEXT, "cluster": {
            "server": server_url, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": "livedrill-lab-admin", "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "livedrill-lab-admin"}}],
    }, indent=2)


def load_into(store: Store, preset: Preset, ledger_addresses: dict[str, str] | None = None) -> None:
    """The preset's objects, in order; a VM or VMI named in `ledger_addresses` ("ns/name" -> host:port) is annotated with it."""
    uids: dict[tuple[str, str, str], str] = {}  # (namespace, kind, name) -> uid of objects created so far
    for item in preset.objects:
        r = resources.find(item.group, item.version, item.plural)
        if r is None:
            raise ValueError(f"preset {preset.name} has an object of unknown type {item.group}/{item.plural}")
        body = json.loads(json.dumps(item.body))
        address = (ledger_addresses or {}).get(f"{item.namespace}/{body['metadata'].get('name')}")
        if address and item.plural in ("virtualmachines", "virtualmachineinstances"):
            body["metadata"].setdefault("annotations", {})[LEDGER_ADDRESS_ANNOTATION] = address
        for owner in body["metadata"].get("ownerReferences", []):
            owner["uid"] = owner["uid"] or uids.get((item.namespace, owner["kind"], owner["name"]), "")
        created = store.create(r, item.namespace, body)
        uids[(item.namespace, r.kind, created["metadata"]["name"])] = created["metadata"]["uid"]


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m livedrill_lab.kube")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--preset", default="targeted")
    parser.add_argument("--workload", action="append", default=[], metavar="NS/NAME=PID",
                        help="the process paused at a VMI's stop-and-copy")
    parser.add_argument("--ledger-address", action="append", default=[], metavar="NS/NAME=HOST:PORT",
                        help="annotate this VM and VMI with its ledger's host:port (presets with annotate_ledger_addresses)")
    parser.add_argument("--controller-config", default="{}", help="JSON overrides of ControllerConfig")
    parser.add_argument("--exit-with-pid", type=int, default=None,
                        help="stop (and terminate the workloads) once this process is gone, e.g. a test run")
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        parser.error(f"{TOKEN_ENV} must hold the bearer token")
    if not args.host.startswith("127."):
        parser.error("the lab serves on loopback only")

    workloads = {}
    for item in args.workload:
        key, _, pid = item.partition("=")
        workloads[key] = int(pid)
    config = ControllerConfig.model_validate({**json.loads(args.controller_config), "workloads": workloads,
                                              "freezes_file": str(args.state_dir / "freezes.json")})
    store = Store()
    controller = VirtController(store, config)
    load_into(store, load_preset(args.preset), dict(item.partition("=")[::2] for item in args.ledger_address))
    start_new_vmis(store)
    ca_pem, cert_path, key_path = issue_server_certificate(args.state_dir, args.host)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_path, key_path)
    server = LabApiServer((args.host, args.port), store, controller, token, tls)
    port = server.server_address[1]
    metrics = HandlerMetricsServer(args.host, store, config, controller.live_copies)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serving.start()
    metrics.start()
    controller.start()
    _write_private(args.state_dir / "kubeconfig", kubeconfig_text(f"https://{args.host}:{port}", token, ca_pem))
    _write_private(args.state_dir / "api-ready", json.dumps({"pid": os.getpid(), "port": port,
                                                             "metrics_port": metrics.port}))
    orphaned = False
    try:
        while not stop.wait(PARENT_CHECK_INTERVAL_S):
            if args.exit_with_pid is not None and not _alive(args.exit_with_pid):
                orphaned = True
                break
    finally:
        controller.stop()
        metrics.stop()
        server.shutdown()
        server.server_close()
        if orphaned:  # nobody is left to run stop_lab: end the lab's workloads too
            for pid in workloads.values():
                for sig in (signal.SIGCONT, signal.SIGTERM):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


if __name__ == "__main__":
    sys.exit(main())
