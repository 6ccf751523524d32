"""`livedrill` command line; its exit codes are livedrill.outcomes.ExitCode, for every command."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from livedrill.outcomes import ExitCode
from livedrill.platforms.registry import preload
from livedrill.prefect_api import STARTUP_TIMEOUT_ENV, LocalPrefectAPI, start_local_api
from livedrill.spec import DrillSpec, SpecError, load_spec

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from livedrill.evidence.store_config import ObjectStoreConfig
    from livedrill.evidence.verify import TimestampPolicy, VerifyReport

DEFAULT_LAB_DIR = Path(".livedrill/lab")


def _prefect_defaults() -> None:
    """Quiet, offline-friendly Prefect defaults, set before Prefect is imported; the user's settings win."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault(STARTUP_TIMEOUT_ENV, "90")


def _load(path: str) -> tuple[DrillSpec, str] | None:
    try:
        spec = load_spec(path)
    except SpecError as exc:
        print(f"{exc.source}: invalid drill spec", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None
    return spec, Path(path).read_text(encoding="utf-8")


def cmd_validate(args: argparse.Namespace) -> int:
    from livedrill.programme import cli as programme_cli

    worst = ExitCode.OK
    for path in args.files:
        if programme_cli.is_programme_file(path):
            worst = max(worst, programme_cli.validate_file(path))
            continue
        loaded = _load(path)
        if loaded is None:
            worst = ExitCode.BAD_INPUT
        else:
            spec = loaded[0]
            print(f"{path}: OK ({spec.name}: {spec.platform.kind} {spec.mode.kind}, {len(spec.vms)} VM(s), {len(spec.probes)} probe(s))")
    return worst


def print_verdict(verdict, stream=None) -> None:
    stream = stream or sys.stdout
    print(f"\nVERDICT: {verdict.outcome.value}", file=stream)
    if verdict.observed_downtime_ms is not None:
        print(f"observed downtime (longest probe gap): {verdict.observed_downtime_ms:.1f} ms", file=stream)
    for reason in verdict.reasons:
        print(f"  - {reason}", file=stream)
    if verdict.evidence_dir:
        print(f"evidence: {verdict.evidence_dir}", file=stream)


def start_prefect_api() -> LocalPrefectAPI | None:
    """A local Prefect API for run_drill when the environment names none; call it first thing (it boots meanwhile)."""
    _prefect_defaults()  # the server inherits them
    return start_local_api()


def run_drill(spec: DrillSpec, spec_text: str, api: LocalPrefectAPI | None = None):
    """Run the drill flow; `api` is one start_prefect_api() started earlier, else one starts here if needed."""
    api = api or start_prefect_api()
    from flows.drill import drill  # imported late: Prefect is slow to import and reads env at import
    from flows.local_api import adopt

    if api is not None:
        if adopt(api):
            preload(spec.platform.kind)  # while the API boots
            api.wait_ready(float(os.environ[STARTUP_TIMEOUT_ENV]))
        else:
            api.stop()
    return drill(spec, spec_text)


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so that every layer's cleanup (cancel, rollback, seal) runs, then re-raised."""


def _raise_on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated(f"signal {signum}")


def interrupt_on_sigterm() -> None:
    """From now on SIGTERM unwinds like Ctrl-C (cancel, roll back, seal), then exits 143."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)


class _ExitWithoutTeardown:
    """Registered first, so it runs after every other exit handler (Prefect's flushes, the local API's stop).

    A drill's process ends with Prefect, kubernetes' client models and the stages loaded; the interpreter's
    teardown of them took 1.7 s after the last exit handler (measured on 2 shared CPUs, benchmarks/
    drill_overhead.py "exit"), and nothing is left for it to do: the evidence is sealed and fsynced and
    the handlers have run. Only a drill that returned its verdict skips it; any other exit is a normal one,
    and so is every exit of a process that calls main() itself (a test, a program): only entry() uses this.
    """

    def __init__(self) -> None:
        self.code: int | None = None
        atexit.register(self)

    def __call__(self) -> None:
        if self.code is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(self.code)


def warm_imports() -> None:
    """What a drill imports, once, in the server's drill runner (livedrill.drill_runner): Prefect, the flows (and
    through them their tasks), every module of the product (stages import theirs lazily) and every installed
    platform library."""
    _prefect_defaults()
    import importlib
    import pkgutil

    import flows
    import livedrill
    from livedrill.platforms.registry import kinds

    for package in (flows, livedrill):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not module.name.endswith("__main__"):  # running it is its import
                try:
                    importlib.import_module(module.name)
                except ImportError:
                    pass  # a platform library not installed here: a drill of it fails as it would cold
    for kind in kinds():
        try:
            preload(kind)
        except ImportError:
            pass


def run_forked(argv: list[str], api_url: str) -> int:
    """main(ARGV) in a drill process the runner forked, pointed at the runner's Prefect server unless the asking
    command's environment names another API. main() never hands a drill to a runner (livedrill.launch does)."""
    from flows.local_api import adopt_environment

    _prefect_defaults()
    adopt_environment(api_url)
    return main(argv)


def cmd_run(args: argparse.Namespace) -> int:
    api = start_prefect_api()  # first: it boots while the spec loads and Prefect is imported
    loaded = _load(args.file)
    if loaded is None:
        return ExitCode.BAD_INPUT
    interrupt_on_sigterm()
    verdict = run_drill(*loaded, api=api)
    print_verdict(verdict)
    if args.leave is not None:
        args.leave.code = verdict.outcome.exit_code
    return verdict.outcome.exit_code


def cmd_recover(args: argparse.Namespace) -> int:
    from livedrill.evidence.archive import Archive, EvidenceError
    from livedrill.stages.recovery import RunInProgress, recover_run

    try:
        run = Archive(Path(args.archive)).find(args.run_id)
    except EvidenceError as exc:
        print(f"recover: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        verdict = recover_run(run, force=args.force)
    except RunInProgress as exc:
        print(f"recover: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if verdict is None:
        print(f"{run.run_id}: already sealed, nothing to recover")
        return ExitCode.OK
    print_verdict(verdict)
    return verdict.outcome.exit_code


def cmd_preflight(args: argparse.Namespace) -> int:
    loaded = _load(args.file)
    if loaded is None:
        return ExitCode.BAD_INPUT
    from livedrill.stages.gate import run_gate

    verdict = run_gate(*loaded)
    for check in verdict.checks:
        print(f"[{check.status.value:>14}] {check.name:<24} {check.subject or ''}: {check.message}")
        if check.remedy and check.status.value == "fail":
            print(f"{'':>17}remedy: {check.remedy}")
    print_verdict(verdict)
    return verdict.outcome.exit_code


def cmd_readiness(args: argparse.Namespace) -> int:
    """Which core-tier VMs could be drilled today (reads only). 0 all ready, 1 some not, 2 bad input / unreachable."""
    from livedrill.errors import InputError, PlatformError
    from livedrill.readiness import format_report, parse_selector, scan_readiness
    from livedrill.platforms.kubevirt.config import KubeVirtPlatform

    spec = None
    if Path(args.cluster).is_file():
        loaded = _load(args.cluster)
        if loaded is None:
            return ExitCode.BAD_INPUT
        spec = loaded[0]
        if not isinstance(spec.platform, KubeVirtPlatform):
            print(f"readiness: {args.cluster} drills a {spec.platform.kind} platform; readiness scans KubeVirt clusters",
                  file=sys.stderr)
            return ExitCode.BAD_INPUT
        platform, cluster = spec.platform, spec.cluster
        if args.request_timeout is not None:
            platform = platform.model_copy(update={"request_timeout_s": args.request_timeout})
    else:
        platform = KubeVirtPlatform(kind="kubevirt", kubeconfig=args.kubeconfig, context=args.cluster,
                                    **({"request_timeout_s": args.request_timeout} if args.request_timeout else {}))
        cluster = f"context {args.cluster}"
    try:
        selector = parse_selector(args.selector) if args.selector else None
        from livedrill.platforms.kubevirt.adapter import KubeVirtAdapter

        # A daily scan may retry a transient error, but gives up within a few request timeouts.
        adapter = KubeVirtAdapter(platform, call_deadline_s=platform.request_timeout_s * 3)
        try:
            report = scan_readiness(adapter, spec, selector, args.namespace)
        finally:
            adapter.close()
    except (InputError, PlatformError) as exc:
        print(f"readiness: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(report.model_dump_json(indent=2) if args.json else format_report(report, cluster))
    return ExitCode.OK if report.ready else ExitCode.FAILED


LAB_PACKAGE = "livedrill_lab"


def run_lab(argv: list[str]) -> int:
    """Runs the lab's command line, `python -m livedrill_lab ARGV`, in a child process; returns its exit code.

    The product never imports a lab (import-linter contract): the labs are their own distribution beside
    the product, installed by `make venv` from the repository's lab/ directory, not part of livedrill's
    wheel. The child runs in its own process group and SIGINT/SIGTERM sent to this process are passed on
    to it once, so a Ctrl-C during `livedrill demo` cancels and rolls back the drill as it would in-process.
    """
    if importlib.util.find_spec(LAB_PACKAGE) is None:
        print(f"livedrill {argv[0]}: the lab package {LAB_PACKAGE} is not installed. The labs are not part of the "
              f"livedrill wheel; install them from a clone of the repository: pip install -e ./lab "
              f"(make venv does)", file=sys.stderr)
        return ExitCode.BAD_INPUT
    child = subprocess.Popen([sys.executable, "-m", LAB_PACKAGE, *argv], process_group=0)

    def pass_on(signum, frame):  # noqa: ARG001 - signal handler signature
        child.send_signal(signum)

    previous = {signum: signal.signal(signum, pass_on) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        returncode = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - returncode if returncode < 0 else returncode


def cmd_lab(args: argparse.Namespace) -> int:
    return run_lab(["lab", args.action, "--preset", args.preset, "--hypervisor", args.hypervisor,
                    "--state-dir", args.state_dir])


def _trusted_keys(args: argparse.Namespace) -> list[Ed25519PublicKey] | None:
    """The keys given with --trusted-key and --trust-file (default $LIVEDRILL_TRUSTED_KEYS); None when none are."""
    from livedrill.evidence.trust import load_trusted_keys, trust_file_from_env

    trust_file = Path(args.trust_file) if args.trust_file else trust_file_from_env()
    paths = [Path(p) for p in args.trusted_key or []] + ([trust_file] if trust_file else [])
    return load_trusted_keys(paths) if paths else None


def _timestamp_policy(args: argparse.Namespace) -> TimestampPolicy:
    """--tsa-root, --require-timestamps and --tsa-tolerance as verification's TimestampPolicy."""
    from datetime import timedelta

    from cryptography import x509

    from livedrill.evidence.trust import TrustInputError
    from livedrill.evidence.verify import TimestampPolicy

    roots = []
    for path in args.tsa_root or []:
        try:
            roots.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
        except (OSError, ValueError) as exc:
            raise TrustInputError(f"{path}: not a readable PEM certificate file ({exc})") from exc
    tolerance = timedelta(seconds=args.tsa_tolerance) if args.tsa_tolerance is not None else None
    return TimestampPolicy(roots=roots, required=args.require_timestamps, tolerance=tolerance)


def _verify_exit_code(report: VerifyReport) -> ExitCode:
    if report.problems:
        return ExitCode.BAD_INPUT if report.bad_input else ExitCode.FAILED
    return ExitCode.OK if report.origin == "established" else ExitCode.INTEGRITY_ONLY


def _store_from_args(args: argparse.Namespace) -> "ObjectStoreConfig":
    from livedrill.evidence.store_config import store_from_url

    return store_from_url(args.archive, endpoint_url=args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
                          credentials_file=Path(args.credentials) if args.credentials else None)


def cmd_evidence_sync(args: argparse.Namespace) -> int:
    """Finish the store seals a stopped process left part-way, then seal the cluster's judged runs the store missed."""
    from livedrill.errors import PlatformError
    from livedrill.evidence.archive import Archive
    from livedrill.evidence.store import ObjectStore
    from livedrill.evidence.worm import sync_store

    loaded = _load(args.spec)
    if loaded is None:
        return ExitCode.BAD_INPUT
    spec = loaded[0]
    if spec.evidence.store is None:
        print(f"sync: {args.spec}: evidence.store is not set: this drill seals into its local archive only", file=sys.stderr)
        return ExitCode.BAD_INPUT
    from livedrill.stages.finish import VERDICT_FILE
    from livedrill.stages.recovery import crashed_runs, recover_run

    try:
        finished = sync_store(Archive(spec.evidence.dir), ObjectStore(spec.evidence.store))
        print(f"{spec.evidence.store.url}: finished {len(finished)} interrupted seal(s)"
              + (f" at position(s) {', '.join(map(str, finished))}" if finished else ""))
        ended, running = crashed_runs(spec.evidence.dir, spec.cluster)
        left = 0
        for run in ended:
            if (run.path / VERDICT_FILE).exists():  # judged, only the seal is missing (the store was down)
                recover_run(run)
                print(f"sealed {run.run_id}")
            else:
                left += 1
                print(f"{run.run_id}: the drill stopped before its verdict: `livedrill recover {run.run_id}` rolls it back and seals it")
    except PlatformError as exc:
        print(f"sync: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    for run in running:
        print(f"{run.run_id}: still owned by a running drill, left alone")
    return ExitCode.FAILED if left else ExitCode.OK


def cmd_evidence_timestamp(args: argparse.Namespace) -> int:
    """Timestamp every sealed run of the spec's archive that has none (after a TSA outage), and store each token."""
    from livedrill.errors import PlatformError
    from livedrill.evidence.archive import Archive
    from livedrill.evidence.timestamp import TimestampAuthority
    from livedrill.evidence.worm import StoreUnavailable, publish_timestamp

    loaded = _load(args.spec)
    if loaded is None:
        return ExitCode.BAD_INPUT
    evidence = loaded[0].evidence
    if evidence.tsa is None:
        print(f"timestamp: {args.spec}: evidence.tsa is not set: name the Time-Stamping Authority there", file=sys.stderr)
        return ExitCode.BAD_INPUT
    archive = Archive(evidence.dir)
    tsa = TimestampAuthority(**evidence.tsa.model_dump())  # the spec section has exactly its fields
    failed = 0
    for run_id, outcome in archive.timestamp_unstamped(tsa).items():
        if outcome.startswith("error: "):
            failed += 1
            print(f"{run_id}: {outcome}")
            continue
        try:
            if evidence.store is not None:
                publish_timestamp(archive.find(run_id), evidence.store)
        except (StoreUnavailable, PlatformError) as exc:
            failed += 1
            print(f"{run_id}: stamped at {outcome}, not yet in the store: {exc}")
            continue
        print(f"{run_id}: stamped at {outcome}")
    return ExitCode.FAILED if failed else ExitCode.OK


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    from livedrill.errors import PlatformError
    from livedrill.evidence.store_config import is_store_url
    from livedrill.evidence.trust import TrustInputError
    from livedrill.evidence.verify import format_problems, verify_archive_report, verify_run_report

    try:
        trusted = _trusted_keys(args)
        if args.run_dir:
            if args.anchor or args.witness:
                raise TrustInputError("--anchor and --witness check the chain of an archive: use --archive DIR, not a run directory")
            report = verify_run_report(Path(args.run_dir), trusted_keys=trusted, timestamps=_timestamp_policy(args))
        elif is_store_url(args.archive):
            from livedrill.evidence.store import ObjectStore
            from livedrill.evidence.store_verify import verify_store_report

            store = ObjectStore(_store_from_args(args))
            report = verify_store_report(store, quarter=args.quarter, trusted_keys=trusted, anchors=args.anchor or [],
                                         witness=Path(args.witness) if args.witness else None, timestamps=_timestamp_policy(args))
        else:
            report = verify_archive_report(Path(args.archive), quarter=args.quarter, trusted_keys=trusted, anchors=args.anchor or [],
                                           witness=Path(args.witness) if args.witness else None, timestamps=_timestamp_policy(args))
    except PlatformError as exc:  # the store refused or could not be reached: nothing was verified
        print(f"verify: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except (TrustInputError, ValueError) as exc:  # ValueError: not a quarter like 2026Q4; StoreInputError: a bad --archive URL
        print(f"verify: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    code = _verify_exit_code(report)
    if args.json:
        print(json.dumps({**report.model_dump(mode="json"), "verified": code == ExitCode.OK, "exit_code": int(code)}, indent=2))
        return code
    what = report.target + (f" ({report.quarter})" if report.quarter else "")
    runs = f"{report.runs_checked} run(s)"
    anchors = f"; anchor(s) {', '.join(report.anchors)} in place" if report.anchors else ""
    if args.witness:
        anchors += f"; {report.witnessed_heads} chain head(s) of witness {args.witness} in place"
    if report.quarter:  # the quarter's runs one by one: what an audit of that quarter signs off
        for run in report.runs:
            if run.files_checked or run.result == "failed":
                where = f"#{run.sequence}" if run.sequence is not None else "not in chain"
                detail = "verified" if run.result == "verified" else f"FAILED ({run.problems} problem(s))"
                print(f"  {where:>6} {run.run_id}  key {run.key_id or '-'}  {detail}")
    if report.problems:
        print(f"{what}: NOT VERIFIED", file=sys.stderr)
        print(format_problems(report.problems), file=sys.stderr)
    elif report.origin == "established":
        print(f"{what}: verified ({runs}: hashes, signatures and chain intact; signed by trusted key(s) "
              f"{', '.join(report.trusted_key_ids or [])} or their rotated successors{anchors})")
    else:
        print(f"{what}: integrity verified ({runs}: hashes, signatures and chain intact{anchors}), but origin not established: "
              f"no trusted key was given, and the archive's own key(s) {', '.join(report.signing_key_ids)} prove nothing about who "
              f"sealed it. Pin the key your bank published: --trusted-key KEY.pub, --trust-file FILE or $LIVEDRILL_TRUSTED_KEYS")
    return code


def cmd_evidence_export(args: argparse.Namespace) -> int:
    from livedrill.errors import PlatformError
    from livedrill.evidence.export import ExportError, ExportInputError, export_quarter
    from livedrill.evidence.keys import SigningKeyError, load_signer, signer_from_env
    from livedrill.evidence.store_config import is_store_url

    try:
        signer = load_signer(Path(args.signing_key)) if args.signing_key else signer_from_env()
        trusted = _trusted_keys(args)
        with contextlib.ExitStack() as stack:
            archive = Path(args.archive)
            if is_store_url(args.archive):  # the bucket's sealed versions, laid out as a directory archive
                from livedrill.evidence.store import ObjectStore
                from livedrill.evidence.store_verify import download_sealed

                store = ObjectStore(_store_from_args(args))
                archive = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="livedrill-export-")))
                for problem in download_sealed(store, archive):
                    print(f"export: store: [{problem.code}] {problem.file}: {problem.message}", file=sys.stderr)
            attachments = []
            if args.programme:  # the programme's coverage and test record of the quarter, from the very archive exported
                from livedrill.programme.cli import attachments_for_export

                found = attachments_for_export(args.programme, args.inventory, args.discover, archive, args.quarter)
                if isinstance(found, int):
                    return found
                attachments += found
            result = export_quarter(archive, args.quarter, Path(args.out), signer=signer, trusted_keys=trusted,
                                    timestamps=_timestamp_policy(args), attachments=attachments)
    except (ExportInputError, SigningKeyError, ValueError) as exc:  # ValueError: not a quarter, unreadable trusted key
        print(f"export: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except PlatformError as exc:  # the store refused or could not be reached: nothing was written
        print(f"export: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except ExportError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    print(f"{result.bundle}: {len(result.runs)} drill(s) of {result.quarter}, sha256 {result.bundle_sha256}")
    if result.trusted_key_ids is None:
        print("origin not established: no trusted key was given (--trusted-key, --trust-file or $LIVEDRILL_TRUSTED_KEYS); "
              "VERIFY.md and the report say so")
    if result.unsealed_runs:
        print(f"left out (not sealed): {result.unsealed_runs}")
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace) -> int:
    return run_lab(["demo", "--state-dir", args.state_dir, "--spec", args.spec])


def cmd_serve(args: argparse.Namespace) -> int:
    loaded = [(Path(path), _load(path)) for path in args.files]
    if any(spec is None for _, spec in loaded):
        return ExitCode.BAD_INPUT
    from datetime import datetime, timedelta, timezone

    from livedrill.deploy.schedule import planned_starts

    now = datetime.now(timezone.utc)
    specs = [(path, spec) for path, (spec, _) in loaded]
    for path, spec in specs:
        print(f"quarterly-drill-{spec.name}: cron {spec.schedule.cron!r} {spec.schedule.timezone} ({path})")
        for start in planned_starts(spec.schedule, now, now + timedelta(days=spec.schedule.horizon_days), args.show):
            why = f"  SKIPPED: change freeze {start.frozen_by.reason or start.frozen_by.start}" if start.skipped else ""
            print(f"  {start.at.isoformat()}{why}")
    _prefect_defaults()
    from flows.serve import serve_drills  # imported late: Prefect is slow to import and reads env at import

    serve_drills(specs, now)
    return ExitCode.OK


def cmd_server(args: argparse.Namespace) -> int:
    """The long-lived local Prefect server (livedrill.prefect_server): 0 running (or stopped, for stop), 1 not running
    (or, for stop, drills still running in its runner)."""
    from livedrill import prefect_server

    folder = prefect_server.server_dir(args.dir)
    if args.action == "start":
        _prefect_defaults()  # the server inherits them
        try:
            server, started = prefect_server.start_server(folder, float(os.environ[STARTUP_TIMEOUT_ENV]))
        except RuntimeError as exc:
            print(f"server: {exc}", file=sys.stderr)
            return ExitCode.BAD_INPUT
        runner = f"drill runner pid {server.runner_pid}" if server.runner_pid else \
            f"no drill runner (see {folder / prefect_server.RUNNER_LOG_FILE}): drills run cold"
        print(f"{'started' if started else 'already running'}: Prefect server pid {server.pid}, UI {server.ui_url}, "
              f"{runner}; state in {folder}")
        print("`livedrill run` now runs drills in the warm runner, against this server unless PREFECT_API_URL names "
              "another; `livedrill server stop` ends both")
        return ExitCode.OK
    if args.action == "status":
        server = prefect_server.find_running(folder)
        print(f"running: pid {server.pid}, UI {server.ui_url}, drill runner pid {server.runner_pid}" if server
              else f"not running (state folder {folder})")
        return ExitCode.OK if server else ExitCode.FAILED
    try:
        server = prefect_server.stop_server(folder, force=args.force)
    except prefect_server.DrillsInFlight as exc:
        print(f"server: not stopped: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    print(f"stopped: pid {server.pid}" if server else f"not running (state folder {folder})")
    return ExitCode.OK


def _version() -> str:
    """The installed distribution's version (pyproject.toml's [project] version)."""
    try:
        return version("livedrill")
    except PackageNotFoundError:
        return "unknown (not installed: run `make venv`)"


def _store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint-url", metavar="URL",
                   help="with --archive s3://BUCKET[/PREFIX]: the S3 endpoint of the WORM store (default: $AWS_ENDPOINT_URL)")
    p.add_argument("--credentials", metavar="FILE",
                   help="with --archive s3://...: an AWS shared-credentials file with read access (default: AWS_ACCESS_KEY_ID "
                        "and AWS_SECRET_ACCESS_KEY from the environment)")


def _trust_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trusted-key", action="append", metavar="PUBKEY_FILE",
                   help="a PEM public key received separately (as the archive publishes it in keys/); runs must be signed "
                        "by it or a successor it rotated to (repeatable)")
    p.add_argument("--trust-file", metavar="FILE",
                   help="a file of PEM public keys to trust, for unattended use (default: $LIVEDRILL_TRUSTED_KEYS)")


def _timestamp_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tsa-root", action="append", metavar="PEM",
                   help="a trusted RFC 3161 TSA root certificate: each MANIFEST.tsr must be signed under it (repeatable)")
    p.add_argument("--require-timestamps", action="store_true", help="a sealed run without MANIFEST.tsr is a problem")
    p.add_argument("--tsa-tolerance", type=float, metavar="SECONDS",
                   help="each TSA time at most this long after its run's sealed_at, and TSA times never going backwards "
                        "along the chain (catches a re-seal made later); not checked without it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livedrill", description="Live-migration drills: prove core VMs migrate without interrupting "
        "transactions, and seal the proof.",
        epilog="exit codes: 0 passed or done; 1 a check or SLO failed, or the evidence does not verify; "
               "2 bad input or the platform could not be reached (nothing was changed); "
               "3 evidence intact but no trusted key given (origin not established)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print livedrill's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")

    p = sub.add_parser("validate", help="check drill specs and programmes; print every problem with its field and line")
    p.add_argument("files", nargs="+", metavar="SPEC", help="drill spec or programme files (YAML)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a drill (pre-flight, migration with probes, post-checks, rollback, evidence)")
    p.add_argument("file", metavar="SPEC", help="the drill spec (YAML)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("recover", help="finish a crashed drill: roll back what it left and seal its evidence")
    p.add_argument("run_id", help="the run's directory name in the archive (as printed after `evidence:`)")
    p.add_argument("--archive", default="evidence", help="the archive holding the run (the spec's evidence.dir)")
    p.add_argument("--force", action="store_true", help="take over a run owned by another host you know is down")
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("preflight", help="run only the pre-flight gate of a drill; nothing is changed")
    p.add_argument("file", metavar="SPEC", help="the drill spec (YAML)")
    p.set_defaults(func=cmd_preflight)

    p = sub.add_parser("readiness", help="which core-tier VMs could be drilled today, and why not (reads only)")
    p.add_argument("--cluster", required=True, help="a drill spec (its platform, policy and calendar) or a kubeconfig context")
    p.add_argument("--kubeconfig", help="with a context: the kubeconfig file (default: KUBECONFIG, ~/.kube/config)")
    p.add_argument("--selector", help="VM labels, k=v[,k=v] (default: the spec's core-tier selector, tier=core)")
    p.add_argument("--namespace", help="scan only this namespace")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--request-timeout", type=float, help="seconds per API call (default: the spec's, else 10)")
    p.set_defaults(func=cmd_readiness)

    p = sub.add_parser("lab", help="the embedded lab: up | status | down")
    p.add_argument("action", choices=["up", "status", "down"], help="start, show or stop the lab")
    p.add_argument("--preset", default="targeted",
                   help="KubeVirt lab contents: targeted, drain, drain-100, readiness, or fleet: two lab clusters at once "
                        "for programmes, contexts fleet-a and fleet-b (default: targeted)")
    p.add_argument("--hypervisor", choices=["kubevirt", "libvirt"], default="kubevirt",
                   help="the KubeVirt API lab or the two-host libvirt/QEMU lab (default: kubevirt)")
    p.add_argument("--state-dir", default=str(DEFAULT_LAB_DIR),
                   help=f"where the lab keeps its state, logs and kubeconfig (default: {DEFAULT_LAB_DIR})")
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("evidence", help="evidence archive: verify, export")
    esub = p.add_subparsers(dest="evidence_command", required=True, metavar="ACTION", help="one of:")
    v = esub.add_parser("verify", help="verify a run directory, or a whole archive, offline")
    v.add_argument("run_dir", nargs="?", help="one run directory; without it the whole archive is verified")
    v.add_argument("--archive", default="evidence", help="the archive to verify (default: evidence)")
    v.add_argument("--quarter", help="e.g. 2026Q4")
    _trust_arguments(v)
    _timestamp_arguments(v)
    v.add_argument("--anchor", action="append", metavar="SHA256",
                   help="a chain head recorded at an earlier audit (SHA256 or SEQUENCE:SHA256, as VERIFY.md prints it); "
                        "it must still be in the chain at its place (repeatable)")
    v.add_argument("--witness", metavar="FILE",
                   help="the witness file every seal appended its chain head to (spec evidence.witness): each head must "
                        "still be in the chain at its place")
    v.add_argument("--json", action="store_true", help="print what was verified as JSON (origin, keys, anchors, problems)")
    _store_arguments(v)
    v.set_defaults(func=cmd_evidence_verify)
    t = esub.add_parser("timestamp", help="timestamp the sealed runs that have none (the TSA was down when they were sealed)")
    t.add_argument("spec", help="the drill spec whose evidence.tsa stamps and whose evidence.dir (and store) holds the runs")
    t.set_defaults(func=cmd_evidence_timestamp)
    y = esub.add_parser("sync", help="finish seals into the spec's object store that a stopped process left part-way")
    y.add_argument("spec", help="the drill spec whose evidence.store to repair")
    y.set_defaults(func=cmd_evidence_sync)

    p = sub.add_parser("serve", help="serve the Prefect deployments: quarterly-drill-<name> per spec, and on-demand")
    p.add_argument("files", nargs="+", help="drill specs the deployments may run")
    p.add_argument("--show", type=int, default=4, help="upcoming starts to print per spec")
    p.set_defaults(func=cmd_serve)

    x = esub.add_parser("export", help="one auditor bundle for a quarter: report (zh/en), OSCAL, in-toto, raw evidence")
    x.add_argument("--quarter", required=True, help="e.g. 2026Q4")
    x.add_argument("--out", required=True, help="the bundle to write (.tar.gz)")
    x.add_argument("--archive", default="evidence", help="the archive to export from: a directory, or s3://BUCKET[/PREFIX] "
                                                         "with --endpoint-url (default: evidence)")
    x.add_argument("--signing-key", help="signs the in-toto statements (default: $LIVEDRILL_SIGNING_KEY if set)")
    _trust_arguments(x)
    _timestamp_arguments(x)
    _store_arguments(x)
    x.add_argument("--programme", metavar="PROGRAMME", help="add this programme's coverage of the quarter (coverage.json and a "
                                                           "report section; the first page says when it is below policy)")
    x.add_argument("--inventory", metavar="FILE", help="with --programme: its VMs from an inventory file")
    x.add_argument("--discover", action="store_true", help="with --programme: its VMs read from the KubeVirt clusters")
    x.set_defaults(func=cmd_evidence_export)

    p = sub.add_parser("server", help="a local Prefect server (API and UI) that later drills use: start | status | stop")
    p.add_argument("action", choices=["start", "status", "stop"], help="start it (if not running), show it, or end it")
    p.add_argument("--dir", help="its state folder: database, log, PID (default: $LIVEDRILL_SERVER_DIR, else "
                                 "~/.livedrill/prefect-server)")
    p.add_argument("--force", action="store_true", help="stop: even while drills run in its runner")
    p.set_defaults(func=cmd_server)

    p = sub.add_parser("demo", help="start the lab and run the targeted-migration drill on it")
    p.add_argument("--state-dir", default=str(DEFAULT_LAB_DIR),
                   help=f"where the lab keeps its state (default: {DEFAULT_LAB_DIR})")
    p.add_argument("--spec", default="drills/lab-targeted.yaml",
                   help="the drill to run on the lab (default: drills/lab-targeted.yaml)")
    p.set_defaults(func=cmd_demo)

    from livedrill.programme.cli import register as register_programme

    register_programme(sub)
    return parser


def main(argv: list[str] | None = None, leave: _ExitWithoutTeardown | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.leave = leave
    try:
        return args.func(args)
    except Terminated:
        print("terminated: in-flight work was cancelled, rolled back and its evidence sealed", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted: in-flight work was cancelled, rolled back and its evidence sealed", file=sys.stderr)
        return 130


def entry() -> None:
    """The `livedrill` command (console script, `python -m livedrill.cli`): main() in a process of its own."""
    leave = _ExitWithoutTeardown()  # before anything else registers an exit handler: it must run last
    sys.exit(main(leave=leave))


if __name__ == "__main__":
    entry()
