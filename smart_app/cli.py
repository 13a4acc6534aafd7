"""``ivig-check``: evaluate fixtures or a FHIR server, list rulesets, serve the app.

Exit codes (CONTRACT §1): 0 evaluated; 2 bad input or usage (one line on stderr);
3 FHIR server unreachable or refused. No traceback reaches the user.

``evaluate PATH [PATH …|DIR] --format ndjson`` (CONTRACT §6) evaluates many Bundles in one
process: one report per line, in input order (a directory's ``*.json`` files by name), each
byte for byte what evaluating that file alone prints; a bad input gets its own line on
stderr, naming it, and the run goes on, ending with exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fhir_mappings import BundleError, load_record
from fhir_mappings.bundle import one_line
from fhir_mappings.terminology import TerminologyError

from .attestation import RTYPE as RESPONSE, read_back
from .engine.model import RulesetError, available_rulesets, get_ruleset
from .fhir_client import FhirClient, FhirError
from .payers import PayerMapError, load_payer_map
from .questionnaire import DEFAULT_CANONICAL_BASE
from .report import evaluate_record, render_text
from .retrieval import fetch_report
from .startup import warm_and_freeze
from .task import DEFAULT_BASE_URL, DEFAULT_TASK_IDENTIFIER_SYSTEM, build_task, task_identifier

EXIT_OK, EXIT_BAD_INPUT, EXIT_SERVER = 0, 2, 3
DEFAULT_RULESET = "bcbsmt-ig-2013"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(message)


def _as_of(value: str | None) -> date:
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--as-of must be a date as YYYY-MM-DD, got {value!r}") from None


def _read_input(path: str) -> tuple[str | bytes, str]:
    """(content, name for messages): the path as given, so a batch's errors say which file."""
    if path == "-":
        return sys.stdin.buffer.read(), "standard input"
    p = Path(path)
    if p.is_dir():
        raise BundleError(f"{path}: is a directory; give the path of a Bundle JSON file")
    if not p.is_file():
        raise BundleError(f"{path}: no such file")
    try:
        return p.read_bytes(), path
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror})") from exc


def _check_http_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--fhir-base must be an http:// or https:// URL, got {url!r}")


def _expand(paths: list[str]) -> list[tuple[str, str | None]]:
    """The inputs in order, as (path, error): a directory stands for its ``*.json`` files,
    sorted by name; one without any is an input error of its own."""
    out: list[tuple[str, str | None]] = []
    for path in paths:
        p = Path(path)
        if path == "-" or not p.is_dir():
            out.append((path, None))
            continue
        try:
            found = sorted((c for c in p.iterdir() if c.suffix == ".json" and c.is_file()), key=lambda c: c.name)
        except OSError as exc:
            out.append((path, f"{path}: cannot be read ({exc.strerror})"))
            continue
        out.extend((str(c), None) for c in found)
        if not found:
            out.append((path, f"{path}: a directory without *.json files"))
    return out


def _write_report(report: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    elif fmt == "ndjson":
        # One line per report, ASCII only, so no line splitter (U+2028 …) breaks a report.
        sys.stdout.write(json.dumps(report, separators=(",", ":")) + "\n")
    else:
        sys.stdout.write(render_text(report))
    sys.stdout.flush()  # a pipeline reading the stream gets each report as it is made


def _evaluation(args: argparse.Namespace) -> dict[str, Any]:
    """evaluate_record's settings from the options and the environment (checked before any I/O)."""
    # --ruleset decides; without it the Bundle's primary Coverage chooses through the payer
    # map (IVIG_PAYER_MAP, else the shipped one), and $IVIG_RULESET is only the fallback.
    default_ruleset = os.environ.get("IVIG_RULESET") or DEFAULT_RULESET
    for ruleset_id in filter(None, (args.ruleset, default_ruleset)):
        get_ruleset(ruleset_id)  # unknown ruleset: usage error before any I/O
    canonical = (os.environ.get("IVIG_CANONICAL_BASE") or "").strip().rstrip("/") or DEFAULT_CANONICAL_BASE
    return {"default_ruleset": default_ruleset, "canonical_base": canonical,
            "payer_map": load_payer_map(os.environ.get("IVIG_PAYER_MAP") or None)}


def _bundle_record(path: str):
    text, what = _read_input(path)
    return load_record(text, what)


def cmd_evaluate(args: argparse.Namespace) -> int:
    as_of = _as_of(args.as_of)
    evaluation = _evaluation(args)
    base_url = os.environ.get("IVIG_PUBLIC_BASE_URL", DEFAULT_BASE_URL)
    system = (os.environ.get("IVIG_TASK_IDENTIFIER_SYSTEM") or "").strip() or DEFAULT_TASK_IDENTIFIER_SYSTEM
    if args.fhir_base:
        if args.bundle:
            raise UsageError("give either BUNDLE.json or --fhir-base, not both")
        if not args.patient:
            raise UsageError("--fhir-base needs --patient ID")
        _check_http_url(args.fhir_base)
        return _evaluate_server(args, as_of, base_url, system, **evaluation)
    if not args.bundle:
        raise UsageError("give a BUNDLE.json (or - for standard input), or --fhir-base with --patient")
    if args.write_task:
        raise UsageError("--write-task needs --fhir-base")
    batch = len(args.bundle) > 1 or any(p != "-" and Path(p).is_dir() for p in args.bundle)
    if batch and args.format == "json":
        raise UsageError("several inputs: use --format ndjson (one report per line) or --format text")
    if batch and args.task_out:
        raise UsageError("--task-out takes one BUNDLE.json, not several")
    inputs = _expand(args.bundle)
    if len(inputs) > 1:  # a pipeline's batch: start-up objects out of the collector's way
        warm_and_freeze()
    bad = 0
    for path, error in inputs:
        # Each input is evaluated exactly as it would be on its own; a bad one is reported
        # on one line and the run goes on (exit 2 at the end).
        try:
            if error is not None:
                raise BundleError(error)
            record = _bundle_record(path)
        except BundleError as exc:
            sys.stderr.write(f"ivig-check: {one_line(exc, 500)}\n")
            sys.stderr.flush()
            bad += 1
            continue
        report = evaluate_record(record, args.ruleset, as_of, **evaluation)
        if args.task_out:  # the Task is built (and validated) only when it is output
            task = build_task(report, base_url, identifier_system=system)
            Path(args.task_out).write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")
        _write_report(report, args.format)
    return EXIT_BAD_INPUT if bad else EXIT_OK


def _evaluate_server(args: argparse.Namespace, as_of: date, base_url: str, system: str,
                     **evaluation: Any) -> int:
    client = FhirClient(args.fhir_base, token=args.bearer_token)
    record, report = fetch_report(client, args.patient, args.ruleset, as_of, **evaluation)
    # The clinician's attestations stored on the server (attestation.read_back)
    record, report = read_back(record, report, lambda ids: client.read_existing(RESPONSE, ids),
                               lambda rec: evaluate_record(rec, args.ruleset, as_of, **evaluation))
    if args.task_out:
        task = build_task(report, base_url, identifier_system=system)
        Path(args.task_out).write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")
    if args.write_task:
        stored, created = client.upsert_task(
            build_task(report, base_url, identifier_system=system)
            or {"identifier": [task_identifier(report, system=system)]},
            lambda existing: build_task(report, base_url, existing=existing, identifier_system=system),
        )
        report["task"] = {
            "reference": f"Task/{stored['id']}" if stored and stored.get("id") else None,
            "created": created,
            "status": stored.get("status") if stored else None,
        }
    _write_report(report, args.format)
    return EXIT_OK


def cmd_letter(args: argparse.Namespace) -> int:
    """The draft letter of medical necessity for a patient Bundle (its attestations included)."""
    from . import letter as lt

    as_of = _as_of(args.as_of)
    evaluation = _evaluation(args)
    if args.format == "pdf" and not args.out and sys.stdout.isatty():
        raise UsageError("--format pdf writes binary data: give --out FILE (or redirect standard output)")
    record = _bundle_record(args.bundle)
    report = evaluate_record(record, args.ruleset, as_of, **evaluation)
    content = lt.build_letter(report, patient_name=lt.patient_name(record.patient))
    if args.format == "text":
        data = lt.render_text(content).encode("utf-8")
    elif args.format == "pdf":
        data = lt.render_pdf(lt.render_html(content))
    else:
        data = lt.render_html(content).encode("utf-8")
    if args.out:
        Path(args.out).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return EXIT_OK


def cmd_rulesets(args: argparse.Namespace) -> int:
    for rs in available_rulesets().values():
        n = len(rs.indications)
        sys.stdout.write(f"{rs.id}\tversion {rs.version}\t{n} indication{'' if n == 1 else 's'}\t{rs.title}\n"
                         f"\tsource: {rs.source}\n")
    return EXIT_OK


def _port(value: str) -> int:
    """argparse type for --port: one check for every command that binds a port."""
    try:
        port = int(value)
    except ValueError:
        raise UsageError(f"--port must be a number, got {value!r}") from None
    if not 0 < port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {port}")
    return port


def cmd_serve(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config
    from .serve import PortInUse, run

    overrides: dict[str, Any] = {}
    if not os.environ.get("IVIG_PUBLIC_BASE_URL"):
        host = f"[{args.host}]" if ":" in args.host else args.host
        overrides["public_base_url"] = f"http://{host}:{args.port}"
    try:
        config = load_config(**overrides)
        sys.stderr.write(f"ivig-check: serving on http://{args.host}:{args.port} "
                         f"(public URL {config.public_base_url}/launch.html)\n")
        run(config, args.host, args.port)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    except PortInUse as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .config import ConfigError
    from .demo import DemoError, examples_dir, run_demo

    try:
        run_demo(args.port, examples_dir())
    except (DemoError, ConfigError) as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _version() -> str:
    try:
        return metadata.version("ivig-coverage-check")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ivig-check", description="IVIG/SCIG coverage check on FHIR R4 records")
    parser.add_argument("--version", action="version", version=f"ivig-check {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ev = sub.add_parser("evaluate", help="evaluate a patient Bundle or a patient on a FHIR server")
    ev.add_argument("bundle", nargs="*", metavar="PATH",
                    help="FHIR R4 Bundle JSON file(s), directories of them (their *.json files, by "
                         "name), or - for standard input")
    ev.add_argument("--ruleset", help="ruleset id (default: the one the patient's Coverage maps to "
                                      f"in the payer map, else $IVIG_RULESET or {DEFAULT_RULESET})")
    ev.add_argument("--as-of", help="evaluation date YYYY-MM-DD (default: today)")
    ev.add_argument("--format", choices=["json", "ndjson", "text"], default="text",
                    help="output format (default: text): json, one report; ndjson, one report per "
                         "line in input order; text, for reading")
    ev.add_argument("--task-out", metavar="FILE", help="write the Task that would be written back")
    ev.add_argument("--fhir-base", metavar="URL", help="FHIR R4 base URL to read the patient from")
    ev.add_argument("--patient", metavar="ID", help="patient id on the FHIR server")
    ev.add_argument("--bearer-token", metavar="T", default=os.environ.get("IVIG_BEARER_TOKEN"),
                    help="access token for the FHIR server (or $IVIG_BEARER_TOKEN)")
    ev.add_argument("--write-task", action="store_true", help="create or update the Task on the server")
    ev.set_defaults(func=cmd_evaluate)
    lt = sub.add_parser("letter", help="draft the letter of medical necessity for a patient Bundle")
    lt.add_argument("bundle", help="FHIR R4 Bundle JSON file, or - for standard input")
    lt.add_argument("--ruleset", help="ruleset id (default: as for evaluate)")
    lt.add_argument("--as-of", help="evaluation date YYYY-MM-DD (default: today)")
    lt.add_argument("--format", choices=["html", "pdf", "text"], default="html")
    lt.add_argument("--out", metavar="FILE", help="write the letter to FILE (default: standard output)")
    lt.set_defaults(func=cmd_letter)
    sv = sub.add_parser("serve", help="run the SMART on FHIR web app under gunicorn")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sv.add_argument("--port", type=_port, default=8000, help="port to bind (default 8000)")
    sv.set_defaults(func=cmd_serve)
    dm = sub.add_parser("demo", help="start a FHIR server with the example patients and the app")
    dm.add_argument("--port", type=_port, default=8000, help="port for the app (default 8000)")
    dm.set_defaults(func=cmd_demo)
    rs = sub.add_parser("rulesets", help="list available rulesets")
    rs.set_defaults(func=cmd_rulesets)
    return parser


def _configure_logging(default: str) -> None:
    name = (os.environ.get("IVIG_LOG_LEVEL") or default).strip().upper()
    if name not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise UsageError(f"IVIG_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {name!r}")
    logging.basicConfig(level=name, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Libraries that log request URLs (patient ids in queries, codes in callbacks) stay at
    # WARNING whatever the app's level: no PHI or credential reaches the log through them.
    for noisy in ("urllib3", "requests", "authlib", "werkzeug", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(name)))


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        _configure_logging(default="INFO" if args.command in ("serve", "demo") else "WARNING")
        return args.func(args)
    except UsageError as exc:
        print(f"ivig-check: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (BundleError, RulesetError, TerminologyError, PayerMapError) as exc:
        print(f"ivig-check: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FhirError as exc:
        print(f"ivig-check: {exc}", file=sys.stderr)
        return EXIT_SERVER
    except OSError as exc:  # e.g. --task-out into a missing directory
        print(f"ivig-check: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "),
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
