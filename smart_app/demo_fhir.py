"""Run the sekmet FHIR R4 server (``sekmet-fhir``, from PyPI) in a subprocess, in memory, on
127.0.0.1: the real FHIR server behind ``ivig-check demo`` and the integration tests.

How sekmet is started (read from its installed source, sekmet-fhir 0.1.1):

* ``python -m sekmet.cli serve --host 127.0.0.1 --port PORT`` (the ``sekmet`` console script is the
  same Typer app); ``serve`` runs ``uvicorn sekmet.main:app_factory --factory``.
* Settings come from a YAML file named by ``SEKMET_CONFIG`` (default ``./settings.yaml``); only
  ``SEKMET_BASE_URL``, ``SEKMET_DB``, ``SEKMET_PUBLIC_URL`` and ``SEKMET_PORT`` override it from the
  environment. The simulator therefore can only be switched off in that file
  (``simulator: {enabled: false}``): it is on by default and, ~2 s after an *external* write of a
  Task / ServiceRequest / MedicationRequest / Appointment / Claim, writes follow-up resources
  (e.g. a MedicationDispense for an active MedicationRequest order, or accepts and results a Task).
* The FHIR base is ``{root}/fhir``; ``base_url`` must name the real host and port, because sekmet
  builds ``fullUrl``, paging links and ``Location`` headers from it.
* Other writers inside sekmet: the Subscription engine (only acts on Subscriptions, which these tests
  never create; at start-up it stores its built-in SubscriptionTopics as ``Basic`` resources), the
  inbound traffic log (a table, not FHIR data; switched off here with ``log_inbound: false`` to keep
  memory flat) and the web console / scenario runner (only when asked over HTTP).

``run_sekmet()`` writes such a settings file into a private temporary directory (also the working
directory of the server, so nothing lands in the repository), points ``SEKMET_DB`` at ``:memory:``,
and waits for ``GET {base}/metadata`` to answer 200.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

__all__ = [
    "EXAMPLES_DIR",
    "BundleLoadError",
    "SekmetServer",
    "SekmetStartError",
    "collection_to_transaction",
    "free_port",
    "load_bundle",
    "load_examples",
    "run_sekmet",
]

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
FHIR_JSON = "application/fhir+json"


class SekmetStartError(RuntimeError):
    """The sekmet process died or did not answer ``/metadata`` in time (message holds the log tail)."""


class BundleLoadError(RuntimeError):
    """A Bundle could not be stored on the server."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings_yaml(base_url: str, port: int, workdir: Path, validation: str, marker: str) -> str:
    # JSON is valid YAML; written this way no YAML library is needed here.
    settings: dict[str, Any] = {
        "base_url": base_url,
        "host": "127.0.0.1",
        "port": port,
        "db_path": ":memory:",
        "data_dir": str(workdir / "data"),
        # shows up in CapabilityStatement.implementation.description: proves /metadata is ours
        "facility_name": marker,
        "own_private_key_path": str(workdir / "keys" / "sekmet_private.pem"),
        "server_auth": {"types": ["none"]},
        "validation": {"inbound": validation},
        # The simulator plays lab/pharmacy/payer: it would mutate Tasks, MedicationRequests, ... ~2 s
        # after they are written. Off, and with nothing it would react to even if turned back on.
        "simulator": {"enabled": False, "auto": [], "results_to": "local"},
        "log_inbound": False,
        "peers": {},
    }
    return json.dumps(settings, indent=2) + "\n"


class SekmetServer:
    """One sekmet process. Use as a context manager, or call ``start()`` / ``stop()``.

    ``base_url`` is the FHIR base (``http://127.0.0.1:PORT/fhir``) once started.
    ``validation`` is sekmet's inbound structural validation mode (``strict`` rejects resources
    its R4B models do not accept with 400; ``warn``; ``off``).
    """

    def __init__(self, port: int | None = None, timeout: float = 60.0, *, validation: str = "strict"):
        self.requested_port = port
        self.timeout = timeout
        self.validation = validation
        self.port: int | None = None
        self.base_url: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self._log_file: Any = None
        self._marker = ""

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> str:
        if self.proc is not None:
            raise RuntimeError("SekmetServer already started")
        self.workdir = Path(tempfile.mkdtemp(prefix="sekmet-"))
        attempts = 1 if self.requested_port else 3  # a picked free port can be taken in between
        last: Exception | None = None
        for _ in range(attempts):
            try:
                return self._start_once(self.requested_port or free_port())
            except SekmetStartError as exc:
                last = exc
                self._terminate()
                msg = str(exc).lower()
                if "address already in use" not in msg and "another server" not in msg:
                    break
        self._cleanup_dir()
        assert last is not None
        raise last

    def _start_once(self, port: int) -> str:
        assert self.workdir is not None
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/fhir"
        config = self.workdir / "settings.yaml"
        self._marker = f"ivig-sekmet-{secrets.token_hex(8)}"
        config.write_text(_settings_yaml(self.base_url, port, self.workdir, self.validation,
                                         self._marker))
        self.log_path = self.workdir / "sekmet.log"
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _terminate
        env = dict(os.environ)
        env.update({
            "SEKMET_CONFIG": str(config),
            "SEKMET_DB": ":memory:",
            "SEKMET_BASE_URL": self.base_url,
            "SEKMET_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("SEKMET_PUBLIC_URL", None)
        cmd = [sys.executable, "-m", "sekmet.cli", "serve", "--config", str(config),
               "--host", "127.0.0.1", "--port", str(port)]
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_ready()
        return self.base_url

    def _wait_ready(self) -> None:
        assert self.proc is not None and self.base_url is not None
        deadline = time.monotonic() + self.timeout
        with requests.Session() as s:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise SekmetStartError(
                        f"sekmet exited with code {code} before answering /metadata; log tail:\n"
                        + self.log_tail())
                try:
                    r = s.get(f"{self.base_url}/metadata", headers={"Accept": FHIR_JSON}, timeout=2)
                    if r.status_code == 200:
                        impl = r.json().get("implementation") or {}
                        if str(impl.get("description", "")).startswith(self._marker):
                            return
                        raise SekmetStartError(
                            f"another server already answers on port {self.port}; log tail:\n"
                            + self.log_tail())
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise SekmetStartError(
                        f"sekmet did not answer {self.base_url}/metadata with 200 within "
                        f"{self.timeout:g} s; log tail:\n" + self.log_tail())
                time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(log unreadable)"

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: pid == pgid
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        elif proc is not None:
            # already exited: still reap anything left in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _cleanup_dir(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def stop(self) -> None:
        self._terminate()
        self._cleanup_dir()

    def __enter__(self) -> str:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def run_sekmet(port: int | None = None, timeout: float = 60, *,
               validation: str = "strict") -> Iterator[str]:
    """Start sekmet on 127.0.0.1 (free port unless ``port``), yield its FHIR base URL, stop it."""
    with SekmetServer(port, timeout, validation=validation) as base_url:
        yield base_url


# --- loading data ----------------------------------------------------------------------------

def collection_to_transaction(bundle: dict) -> dict:
    """A ``transaction`` Bundle with one ``PUT Type/id`` entry per resource, so ids are kept."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BundleLoadError("not a Bundle")
    entries = []
    for i, entry in enumerate(bundle.get("entry") or []):
        res = entry.get("resource")
        if not isinstance(res, dict) or not res.get("resourceType") or not res.get("id"):
            raise BundleLoadError(f"entry {i} has no resource with resourceType and id")
        new: dict[str, Any] = {
            "resource": res,
            "request": {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"},
        }
        if entry.get("fullUrl"):
            new["fullUrl"] = entry["fullUrl"]
        entries.append(new)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _outcome_text(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "; ".join(str(i.get("diagnostics") or i.get("code")) for i in body.get("issue", []))[:1000]
    return json.dumps(body)[:500]


def load_bundle(base_url: str, bundle: dict, *, session: requests.Session | None = None) -> None:
    """Store a collection Bundle's resources with their ids, as one transaction of ``PUT Type/id``.

    sekmet supports transactions with ``PUT Type/id`` (atomic, rolled back as a whole on error), so
    there is no fallback to single PUTs. Raises ``BundleLoadError`` with the server's
    OperationOutcome text if the transaction or any entry fails.
    """
    tx = collection_to_transaction(bundle)
    http = session or requests.Session()
    try:
        resp = http.post(base_url.rstrip("/"), json=tx,
                         headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}, timeout=60)
    finally:
        if session is None:
            http.close()
    if resp.status_code != 200:
        raise BundleLoadError(f"transaction POST to {base_url} answered {resp.status_code}: "
                              f"{_outcome_text(resp)}")
    body = resp.json()
    if body.get("type") != "transaction-response":
        raise BundleLoadError(f"expected a transaction-response, got {body.get('type')!r}")
    statuses = [str((e.get("response") or {}).get("status", "")) for e in body.get("entry", [])]
    if len(statuses) != len(tx["entry"]) or not all(s[:1] == "2" for s in statuses):
        raise BundleLoadError(f"transaction entries not all stored: {statuses}")


def _patient_id(bundle: dict) -> str:
    ids = [e["resource"]["id"] for e in bundle.get("entry", [])
           if (e.get("resource") or {}).get("resourceType") == "Patient"]
    if len(ids) != 1:
        raise BundleLoadError(f"expected exactly one Patient, found {len(ids)}")
    return ids[0]


def load_examples(base_url: str, examples_dir: Path | str = EXAMPLES_DIR) -> list[str]:
    """Load every ``examples/*.json`` Bundle; return the patient ids in file order."""
    files = sorted(Path(examples_dir).glob("*.json"))
    if not files:
        raise BundleLoadError(f"no example Bundles in {examples_dir}")
    ids = []
    with requests.Session() as s:
        for path in files:
            bundle = json.loads(path.read_text(encoding="utf-8"))
            try:
                load_bundle(base_url, bundle, session=s)
            except BundleLoadError as exc:
                raise BundleLoadError(f"{path.name}: {exc}") from exc
            ids.append(_patient_id(bundle))
    return ids
