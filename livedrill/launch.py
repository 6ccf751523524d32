"""The `livedrill` command's first step: `livedrill run SPEC` goes to the warm drill runner of a running
`livedrill server` (livedrill.drill_runner) before this process imports anything heavy; everything else, and a
drill with no runner to take it, goes on to the command line proper (livedrill.cli).

Importing the command line (its spec models, pydantic, httpx) takes 0.3 to 0.6 s, which the asking
command would spend only to forward its arguments.
"""

from __future__ import annotations

import sys


def entry() -> None:
    argv = sys.argv[1:]
    # Only the plain form: any option (--help, ...) is the command line's to parse and answer.
    if len(argv) == 2 and argv[0] == "run" and not argv[1].startswith("-"):
        from livedrill.drill_runner import run_in_runner
        from livedrill.prefect_server import server_dir

        code = run_in_runner(server_dir(), argv)
        if code is not None:
            sys.exit(code)
    from livedrill.cli import entry as run_here

    run_here()
