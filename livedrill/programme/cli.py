"""`livedrill programme ...` and `livedrill validate` of a programme spec; exit codes are ExitCode's."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from livedrill.errors import InputError, PlatformError
from livedrill.evidence.keys import Signer, SigningKeyError, load_signer
from livedrill.evidence.worm import StoreUnavailable
from livedrill.outcomes import ExitCode, utcnow
from livedrill.programme.coverage import Coverage, coverage, format_coverage
from livedrill.programme.dora_record import QuarterTestRecord, format_test_record, quarter_test_record
from livedrill.programme.drills import undrillable
from livedrill.programme.inventory import Inventory, ScopedSources, gather, load_inventory
from livedrill.programme.plan import DrillRecord, History, make_plan
from livedrill.programme.records import DeficiencyRecord, SignOffRecord, read_records, seal_record
from livedrill.programme.report import format_plan
from livedrill.programme.spec import Programme, is_programme, load_programme
from livedrill.spec import SpecError, SpecProblem, VMRef, parse_yaml_model


REPO_ROOT = Path(__file__).resolve().parents[2]  # holds flows/, which the workers load the flows from
WORKER_LOG_DIR = Path(".livedrill") / "workers"  # the logs of workers `programme run --workers` starts


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
    try:
        return is_programme(Path(path).read_text(encoding="utf-8"))
    except OSError:
        return False  # the drill spec loader reports the unreadable file


def register(sub: argparse._SubParsersAction) -> None:
    """`livedrill programme` and its actions, on the top-level parser's subcommands."""
    p = sub.add_parser("programme", help="drill programmes: every core VM drilled each quarter (plan, status)")
    psub = p.add_subparsers(dest="programme_command", required=True, metavar="ACTION", help="one of:")
    x = psub.add_parser("plan", help="assign every in-scope VM to a change window; print what cannot fit")
    _input_arguments(x, "plan as of this ISO date-time with offset (default: now); windows begun before it are skipped",
                     "print the plan as JSON")
    x.set_defaults(func=cmd_plan)
    x = psub.add_parser("status", help="the quarter's coverage: every in-scope VM passed, failed, open or not drilled, "
                                       "and the exceptions with their approval")
    _input_arguments(x, "the coverage as of this ISO date-time with offset (default: now)", "print the coverage as JSON")
    x.set_defaults(func=cmd_status)

    x = psub.add_parser("report", help="the quarter's test record (DORA's fields: each test's id, dates, duration, "
                                       "scenario, method, expected and actual, deficiencies, participants, sign-off)")
    _input_arguments(x, "the record as of this ISO date-time with offset (default: now)", "print the record as JSON")
    x.set_defaults(func=cmd_report)
    x = psub.add_parser("deploy", help="register the programme's deployments on a process work pool, the window "
                                       "flow scheduled at each window's start, for `prefect worker` processes to run")
    _runner_arguments(x)
    x.set_defaults(func=cmd_deploy)
    x = psub.add_parser("run", help="run a window now: its drills on the work pool's workers (clusters in parallel, one "
                                    "drill at a time per cluster); prints each drill and the coverage after")
    _runner_arguments(x)
    x.add_argument("--window", type=int, metavar="N", help="the window's number in time order (default: the one open now)")
    x.add_argument("--workers", type=int, default=0, metavar="N",
                   help="start N `prefect worker` processes on this machine for the run (and a `livedrill server` "
                        "if no Prefect API is configured); default 0: workers elsewhere serve the pool")
    x.add_argument("--json", action="store_true", help="print the window's report as JSON")
    x.set_defaults(func=cmd_run)

    x = psub.add_parser("deficiency", help="record a failed drill's root cause, owner and due date, sealed in the archive")
    x.add_argument("file", metavar="PROGRAMME", help="the programme spec (YAML)")
    x.add_argument("--archive", required=True, metavar="DIR", help="the evidence archive holding the failed drill")
    x.add_argument("--run", required=True, metavar="RUN_ID", help="the failed drill's run id (as its evidence line printed)")
    x.add_argument("--vm", required=True, metavar="NAMESPACE/NAME", help="the VM of that drill the deficiency is about")
    x.add_argument("--root-cause", required=True, help="why it failed, as found")
    x.add_argument("--owner", required=True, help="who remediates it")
    x.add_argument("--due", required=True, metavar="YYYY-MM-DD", help="when the remediation is due")
    x.add_argument("--recorded-by", required=True, help="who records this")
    x.add_argument("--signing-key", help="seals the record (default: $LIVEDRILL_SIGNING_KEY)")
    x.set_defaults(func=cmd_deficiency)

    x = psub.add_parser("sign-off", help="the quarter's management sign-off, with the coverage it saw, sealed in the archive")
    _input_arguments(x, "the coverage as of this ISO date-time with offset (default: now)", "print the record as JSON")
    x.add_argument("--role", required=True, help="one of the programme's sign_off.roles")
    x.add_argument("--name", required=True, help="who signs")
    x.add_argument("--decision", required=True, choices=["approved", "rejected"], help="what they decided")
    x.add_argument("--statement", required=True, help="what they sign, in their words")
    x.add_argument("--signing-key", help="seals the record (default: $LIVEDRILL_SIGNING_KEY)")
    x.set_defaults(func=cmd_sign_off)


def _runner_arguments(x: argparse.ArgumentParser) -> None:
    x.add_argument("file", metavar="PROGRAMME", help="the programme spec (YAML)")
    x.add_argument("--pool", metavar="NAME", help="the process work pool (default: livedrill-<programme name>)")
    x.add_argument("--source", metavar="DIR", default=str(REPO_ROOT),
                   help=f"the livedrill checkout the workers run the flows from (default: {REPO_ROOT})")


def _input_arguments(x: argparse.ArgumentParser, at_help: str, json_help: str) -> None:
    x.add_argument("file", metavar="PROGRAMME", help="the programme spec (YAML)")
    x.add_argument("--discover", action="store_true",
                   help="read the KubeVirt clusters' VMs live, as `livedrill readiness` does (reads only); other "
                        "clusters come from --inventory")
    x.add_argument("--inventory", metavar="FILE",
                   help="the VMs to consider (YAML or JSON: `targets:`, each cluster, vm, node, gib, labels "
                        "and, if it cannot live-migrate, migratable: false with why_not)")
    x.add_argument("--history", metavar="FILE",
                   help="drills already run (YAML or JSON: `drills:`, each cluster, vm, at, outcome passed|failed); "
                        "this quarter's decide what is covered or retested, earlier passes the order")
    x.add_argument("--archive", metavar="DIR",
                   help="the evidence archive: its sealed targeted drills are drills already run (with --history too)")
    x.add_argument("--at", metavar="DATETIME", help=at_help)
    x.add_argument("--json", action="store_true", help=json_help)


def _load_history(path: str | None) -> list[DrillRecord]:
    if path is None:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(path, [SpecProblem(path="", line=None, message=f"cannot read the file: {exc.strerror}")])
    return parse_yaml_model(History, text, path, "drill history").drills


def _planned_at(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--at: {text!r} is not an ISO date-time") from None
    if at.tzinfo is None:
        raise InputError(f"--at: {text!r} has no UTC offset (e.g. +08:00)")
    return at


def _inputs(args: argparse.Namespace) -> tuple[Programme, Inventory, list[DrillRecord], datetime] | int:
    """The programme, its inventory, the drills already run and the moment asked about; an exit code (bad input
    or unreachable, said on stderr) instead when any cannot be had."""
    action = f"programme {args.programme_command}"
    programme = load_or_report(args.file)
    if programme is None:
        return ExitCode.BAD_INPUT
    if not (args.inventory or args.discover):
        print(f"{action}: give --inventory FILE, --discover, or both", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        history = _load_history(args.history)
        if args.archive:
            from livedrill.programme.history import archive_history

            history += archive_history(Path(args.archive))
        now = _planned_at(args.at)
        from_file = load_inventory(args.inventory) if args.inventory else None
        if args.discover:
            from livedrill.programme.discovery import live_inventory

            inventory = live_inventory(programme, from_file)
        else:
            inventory = gather(programme.spec, ScopedSources({}, from_file))
    except SpecError as exc:
        print(f"{exc.source}: invalid input", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except (InputError, PlatformError) as exc:
        print(f"{action}: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return programme, inventory, history, now


def cmd_plan(args: argparse.Namespace) -> int:
    """0: every VM still to drill has a window; 1: some cannot fit (listed); 2: bad input or unreachable."""
    inputs = _inputs(args)
    if isinstance(inputs, int):
        return inputs
    programme, inventory = inputs[0], inputs[1]
    problems = undrillable(programme, inventory.targets)
    if problems:  # a VM whose drill cannot be made (no probe for it) is never planned around silently
        print(f"programme plan: {len(problems)} VM(s) cannot be drilled as specified:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    plan = make_plan(*inputs)
    print(plan.model_dump_json(indent=2) if args.json else format_plan(plan, programme.spec.windows.timezone))
    return ExitCode.OK if plan.fits else ExitCode.FAILED


def _coverage(args: argparse.Namespace) -> tuple[Programme, Coverage] | int:
    inputs = _inputs(args)
    if isinstance(inputs, int):
        return inputs
    programme = inputs[0]
    records = read_records(Path(args.archive), programme.spec.quarter) if args.archive else []
    return programme, coverage(*inputs, records=[r for _, r in records])


def _test_record(programme: Programme, cov: Coverage, archive: Path) -> QuarterTestRecord:
    from datetime import timedelta

    from livedrill.evidence.archive import Archive
    from livedrill.evidence.export_summary import summarize_run
    from livedrill.evidence.manifest import run_started_at
    from livedrill.evidence.records import is_record_run

    # Only runs created in the quarter are read whole (a run id carries its UTC creation time; the quarter is the
    # windows' local one, within a day of UTC); quarter_test_record keeps those that started in it.
    start, end = programme.spec.quarter_span()
    near = [run for run in Archive(archive).runs()
            if (created := run_started_at(run.run_id)) is not None
            and start - timedelta(days=1) <= created < end + timedelta(days=1)]
    summaries = [summarize_run(run.path) for run in near if run.sealed and not is_record_run(run.path)]
    records = [r for _, r in read_records(archive, programme.spec.quarter)]
    return quarter_test_record(programme, summaries, cov, records)


def attachments_for_export(file: str, inventory: str | None, discover: bool, archive: Path, quarter: str) -> list | int:
    """The programme's coverage of `quarter` and its test record, from the archive being exported, as the bundle's
    attachments; or an exit code (said on stderr)."""
    from livedrill.programme.bundle import coverage_attachment, test_record_attachment

    args = argparse.Namespace(programme_command="coverage", file=file, inventory=inventory, discover=discover, history=None,
                              archive=str(archive), at=None)
    found = _coverage(args)
    if isinstance(found, int):
        return found
    programme, cov = found
    if cov.quarter != quarter:
        print(f"export: --programme {file} covers {cov.quarter}, not {quarter}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return [coverage_attachment(cov), test_record_attachment(_test_record(programme, cov, archive))]


def cmd_report(args: argparse.Namespace) -> int:
    """0: the record was printed and the quarter is covered; 1: printed, not covered; 2: bad input or unreachable."""
    if not args.archive:
        print("programme report: give --archive DIR (the record is read from the sealed evidence)", file=sys.stderr)
        return ExitCode.BAD_INPUT
    found = _coverage(args)
    if isinstance(found, int):
        return found
    programme, cov = found
    record = _test_record(programme, cov, Path(args.archive))
    print(record.model_dump_json(indent=2) if args.json else format_test_record(record))
    return ExitCode.OK if cov.complete else ExitCode.FAILED


def cmd_status(args: argparse.Namespace) -> int:
    """0: every in-scope VM to drill passed this quarter; 1: not (each listed); 2: bad input or unreachable."""
    found = _coverage(args)
    if isinstance(found, int):
        return found
    programme, cov = found
    print(cov.model_dump_json(indent=2) if args.json else format_coverage(cov, programme.spec.windows.timezone))
    return ExitCode.OK if cov.complete else ExitCode.FAILED


def _signer(path: str | None) -> Signer:
    """--signing-key, else $LIVEDRILL_SIGNING_KEY: a record is never sealed unsigned (SigningKeyError otherwise)."""
    return load_signer(Path(path) if path else None)


def _seal(archive: str, record: DeficiencyRecord | SignOffRecord, programme: Programme, key: str | None) -> str:
    """Sealed like the drills of that archive: into the drill template's WORM store when --archive is the
    template's evidence archive and it names one."""
    evidence = programme.template.evidence
    same = Path(archive).resolve() == Path(evidence.dir).resolve()
    return seal_record(Path(archive), record, _signer(key), evidence.store if same else None,
                       evidence.witness if same else None)


def cmd_deficiency(args: argparse.Namespace) -> int:
    """0 recorded and sealed; 2 bad input (the run is not a sealed failed drill of that VM in the quarter, ...)."""
    programme = load_or_report(args.file)
    if programme is None:
        return ExitCode.BAD_INPUT
    spec = programme.spec
    try:
        vm = VMRef.parse(args.vm, field="--vm")
        due = _date(args.due)
        drill = _failed_drill(Path(args.archive), args.run, vm, programme)
        record = DeficiencyRecord(programme=spec.name, quarter=spec.quarter, cluster=drill.cluster, vm=vm,
                                  failed_run=args.run, root_cause=args.root_cause, owner=args.owner, due=due,
                                  recorded_by=args.recorded_by, recorded_at=utcnow())
        run_id = _seal(args.archive, record, programme, args.signing_key)
    except StoreUnavailable as exc:
        print(f"programme deficiency: recorded, not sealed yet: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except (InputError, ValueError, ValidationError, SigningKeyError) as exc:
        print(f"programme deficiency: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(f"deficiency of {drill.cluster} {vm} (run {args.run}) recorded and sealed as {run_id}")
    return ExitCode.OK


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--due: {text!r} is not a date YYYY-MM-DD") from None


def _failed_drill(archive: Path, run_id: str, vm: VMRef, programme: Programme) -> DrillRecord:
    """The failed drill of `vm` that run `run_id` of the archive is, in one of the programme's clusters."""
    from livedrill.evidence.archive import Archive, EvidenceError
    from livedrill.evidence.export_summary import summarize_run
    from livedrill.programme.history import records_of

    if not archive.is_dir():
        raise InputError(f"--archive: no evidence archive at {archive}")
    try:
        run = Archive(archive).find(run_id)
    except EvidenceError as exc:
        raise InputError(f"--run: {exc}") from None
    if not run.sealed:
        raise InputError(f"--run: {run_id} is not sealed (`livedrill recover` it first)")
    drills = [r for r in records_of(summarize_run(run.path)) if r.vm == vm]
    clusters = {c.name for c in programme.spec.clusters}
    if not drills or drills[0].outcome != "failed" or drills[0].cluster not in clusters:
        what = (f"a {drills[0].outcome} drill of {vm} on cluster {drills[0].cluster}" if drills
                else f"no targeted drill of {vm}")
        raise InputError(f"--run: {run_id} is {what}; a deficiency records a failed drill of a VM of the programme's "
                         f"clusters {sorted(clusters)}")
    return drills[0]


def cmd_sign_off(args: argparse.Namespace) -> int:
    """0 recorded and sealed (whatever it decided); 2 bad input (a role the programme does not name, ...)."""
    if not args.archive:
        print("programme sign-off: give --archive DIR: the sign-off is sealed there, beside the drills it covers",
              file=sys.stderr)
        return ExitCode.BAD_INPUT
    found = _coverage(args)
    if isinstance(found, int):
        return found
    programme, cov = found
    spec = programme.spec
    if args.role not in spec.sign_off.roles:
        print(f"programme sign-off: --role {args.role!r} is not one of the programme's sign_off.roles "
              f"{spec.sign_off.roles}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        record = SignOffRecord(programme=spec.name, quarter=spec.quarter, role=args.role, name=args.name,
                               decision=args.decision, statement=args.statement, coverage=cov.figures(),
                               recorded_at=utcnow())
        run_id = _seal(args.archive, record, programme, args.signing_key)
    except StoreUnavailable as exc:
        print(f"programme sign-off: recorded, not sealed yet: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except (InputError, ValidationError, SigningKeyError) as exc:
        print(f"programme sign-off: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(record.model_dump_json(indent=2) if args.json else
          f"{args.role} {args.name}: {args.decision} {spec.quarter} with {cov.figures().passed}/{len(cov.rows)} passed"
          f"{'' if cov.complete else ' (NOT COVERED)'}; sealed as {run_id}")
    return ExitCode.OK


def _api_url(start_server: bool) -> str | None:
    """The configured Prefect API, else a running `livedrill server`'s (started now with `start_server`)."""
    from flows.local_api import configured_api_url
    from livedrill import prefect_server
    from livedrill.prefect_api import STARTUP_TIMEOUT_ENV

    url = configured_api_url()
    if url:
        return url
    folder = prefect_server.server_dir()
    running = prefect_server.find_running(folder)
    if running is None and start_server:
        running, _ = prefect_server.start_server(folder, float(os.environ[STARTUP_TIMEOUT_ENV]))
        print(f"started a local Prefect server (`livedrill server stop` ends it): UI {running.ui_url}, state in {folder}",
              file=sys.stderr)
    return running.url if running else None


def _deploy(args: argparse.Namespace, start_server: bool) -> tuple[Programme, str, str] | int:
    from livedrill.cli import _prefect_defaults

    programme = load_or_report(args.file)
    if programme is None:
        return ExitCode.BAD_INPUT
    _prefect_defaults()
    try:
        url = _api_url(start_server)
    except RuntimeError as exc:
        print(f"programme {args.programme_command}: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if url is None:
        print(f"programme {args.programme_command}: no Prefect API: set PREFECT_API_URL, run `livedrill server start`, "
              "or give --workers N to start both here", file=sys.stderr)
        return ExitCode.BAD_INPUT
    from flows.local_api import use_api

    use_api(url)
    from flows.serve import deploy_programme

    pool = args.pool or f"livedrill-{programme.spec.name}"
    names = deploy_programme(Path(args.file), programme, pool, Path(args.source))
    print(f"deployed on work pool {pool} ({url}): {', '.join(names)}", file=sys.stderr)
    return programme, pool, url


def cmd_deploy(args: argparse.Namespace) -> int:
    """0: deployed; 2: bad input or no Prefect API."""
    found = _deploy(args, start_server=False)
    return found if isinstance(found, int) else ExitCode.OK


def cmd_run(args: argparse.Namespace) -> int:
    """0: every drill of the window passed; 1: some did not (each listed); 2: bad input, no window or no API."""
    found = _deploy(args, start_server=args.workers > 0)
    if isinstance(found, int):
        return found
    programme, pool, url = found
    from flows.programme import programme_window
    from livedrill.deploy.workers import running_workers
    from livedrill.programme.window import ChildOutcome, format_window_report

    log_dir = WORKER_LOG_DIR / pool
    from livedrill.cli import interrupt_on_sigterm

    interrupt_on_sigterm()  # a window stopped by SIGTERM cancels its drills, which roll back and seal
    try:
        with running_workers(url, pool, args.workers, log_dir):
            report = programme_window(str(Path(args.file).resolve()), args.window)
    except (InputError, PlatformError, RuntimeError) as exc:
        print(f"programme run: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(report.model_dump_json(indent=2) if args.json else format_window_report(report, programme.spec.windows.timezone))
    return ExitCode.OK if all(r.outcome is ChildOutcome.PASSED for r in report.results) else ExitCode.FAILED
