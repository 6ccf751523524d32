"""The command line's own surface: `--version`, a help text for every argument, the documented exit codes."""

from __future__ import annotations

import argparse
import re
import subprocess
import tomllib
from pathlib import Path

from livedrill.cli import build_parser
from livedrill.outcomes import DrillOutcome, ExitCode

REPO = Path(__file__).resolve().parents[2]
LIVEDRILL = REPO / ".venv" / "bin" / "livedrill"


def _parsers(parser: argparse.ArgumentParser, name: str = "livedrill"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_version_prints_the_installed_package_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = subprocess.run([str(LIVEDRILL), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"livedrill {version}"


def test_every_command_and_argument_has_a_help_text() -> None:
    missing = []
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{name} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_the_readme_states_the_exit_codes_the_code_returns() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| \*\*(\d)\*\* \|", section, flags=re.M)}
    assert documented == {int(code) for code in ExitCode}
    # Every code but INTEGRITY_ONLY is a drill outcome's; that one is `evidence verify`'s alone (no key pinned).
    assert {outcome.exit_code for outcome in DrillOutcome} == set(ExitCode) - {ExitCode.INTEGRITY_ONLY}
