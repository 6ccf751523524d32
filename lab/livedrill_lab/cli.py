"""The lab's command line, `python -m livedrill_lab lab up|status|down` and `python -m livedrill_lab demo`.

`livedrill lab ...` and `livedrill demo` run it in a child process (the product never imports a lab), so
the subcommands and options mirror the product's and the output is what the operator reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from livedrill.cli import DEFAULT_LAB_DIR
from livedrill.outcomes import ExitCode


def cmd_lab(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    if args.hypervisor == "libvirt":
        from livedrill_lab.libvirt import manager as libvirt_lab

        if args.action == "up":
            info = libvirt_lab.start_libvirt_lab(state_dir.parent / "libvirt-lab")
            print(json.dumps(info.model_dump(mode="json"), indent=2, default=str))
        elif args.action == "down":
            libvirt_lab.stop_libvirt_lab(state_dir.parent / "libvirt-lab")
            print("libvirt lab stopped")
        else:
            status = libvirt_lab.libvirt_lab_status(state_dir.parent / "libvirt-lab")
            print(json.dumps(status, indent=2, default=str) if status else "libvirt lab is not running")
            return ExitCode.OK if status else ExitCode.FAILED
        return ExitCode.OK
    from livedrill_lab import fleet, manager

    if args.action == "up" and args.preset == "fleet":
        members = fleet.start_fleet(state_dir)
        for name, info in members.items():
            print(f"fleet cluster {name} up: API {info.api_url}")
        print(f"kubeconfig {state_dir / 'kubeconfig'} (contexts {', '.join(members)}); "
              f"programme {state_dir / fleet.PROGRAMME_FILE}")
        print(f"try: kubectl --kubeconfig {state_dir / 'kubeconfig'} --context {next(iter(members))} get vmi -A")
    elif args.action == "up":
        info = manager.start_lab(state_dir, preset=args.preset)
        print(f"lab up: API {info.api_url}, kubeconfig {info.kubeconfig}, virt-handler metrics {info.metrics_url}")
        print(f"try: kubectl --kubeconfig {info.kubeconfig} get nodes,vmi -A")
    elif args.action == "down":
        if fleet.is_fleet(state_dir):
            fleet.stop_fleet(state_dir)
            (state_dir / fleet.FLEET_FILE).unlink()
        manager.stop_lab(state_dir)
        print("lab down")
    elif fleet.is_fleet(state_dir):
        members = fleet.fleet_status(state_dir)
        for name, info in members.items():
            print(f"fleet cluster {name}: " + (f"running, API {info.api_url}" if info else "not running"))
        return ExitCode.OK if all(members.values()) else ExitCode.FAILED
    else:
        info = manager.lab_status(state_dir)
        if info is None:
            print("lab is not running")
            return ExitCode.FAILED
        print(f"lab running: API {info.api_url}, kubeconfig {info.kubeconfig}, virt-handler metrics {info.metrics_url}")
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace) -> int:
    from livedrill_lab.demo import run_demo

    return run_demo(Path(args.state_dir), Path(args.spec))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m livedrill_lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("lab", help="the embedded lab: up | status | down")
    p.add_argument("action", choices=["up", "status", "down"])
    p.add_argument("--preset", default="targeted", help="the embedded lab's starting state (livedrill_lab.presets); fleet: two lab clusters at once")
    p.add_argument("--hypervisor", choices=["kubevirt", "libvirt"], default="kubevirt",
                   help="kubevirt: the embedded KubeVirt lab; libvirt: the two-host libvirt/QEMU lab")
    p.add_argument("--state-dir", default=str(DEFAULT_LAB_DIR), help="where the lab keeps its state")
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("demo", help="start the lab and run the targeted-migration drill on it")
    p.add_argument("--state-dir", default=str(DEFAULT_LAB_DIR), help="where the lab keeps its state")
    p.add_argument("--spec", default="drills/lab-targeted.yaml", help="the drill spec to run")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted: in-flight work was cancelled, rolled back and its evidence sealed", file=sys.stderr)
        return 130
