"""`livedrill programme ...` and `livedrill validate` of a programme spec; exit codes are ExitCode's."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from livedrill.outcomes import ExitCode
from livedrill.programme.spec import Programme, load_programme
from livedrill.spec import SpecError


def load_or_report(path: str) -> Programme | None:
    """The programme, or None after printing every problem with its field path and line to stderr."""
    try:
        return load_programme(path)
    except SpecError as exc:
        print(f"{exc.source}: invalid drill programme", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def validate_file(path: str) -> ExitCode:
    programme = load_or_report(path)
    if programme is None:
        return ExitCode.BAD_INPUT
    spec = programme.spec
    print(f"{path}: OK (programme {spec.name}: {spec.quarter}, {len(spec.clusters)} cluster(s), "
          f"{len(spec.windows.slots)} window(s), drills from {programme.template.name})")
    return ExitCode.OK


def is_programme_file(path: str) -> bool:
    from livedrill.programme.spec import is_programme

    try:
        return is_programme(Path(path).read_text(encoding="utf-8"))
    except OSError:
        return False  # the drill spec loader reports the unreadable file


def register(sub: argparse._SubParsersAction) -> None:
    """`livedrill programme` and its actions, on the top-level parser's subcommands."""
    p = sub.add_parser("programme", help="drill programmes: every core VM drilled each quarter (plan)")
    psub = p.add_subparsers(dest="programme_command", required=True, metavar="ACTION", help="one of:")
    x = psub.add_parser("plan", help="assign every in-scope VM to a change window; print what cannot fit")
    x.add_argument("file", metavar="PROGRAMME", help="the programme spec (YAML)")
    x.add_argument("--inventory", required=True, metavar="FILE",
                   help="the VMs in scope (YAML or JSON: a list of targets, see livedrill/programme/inventory.py)")
    x.add_argument("--history", metavar="FILE",
                   help="drills already run this quarter (YAML or JSON: a list of vm, cluster, at, outcome)")
    x.add_argument("--json", action="store_true", help="print the plan as JSON")
    x.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    raise NotImplementedError
