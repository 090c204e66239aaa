"""``accord kit check``: the preflight of a startup kit, before the daemon starts.

Theory of operation (docs/provisioning.md, "`accord kit check`"):

- Every check runs, even when an earlier one failed (a check that needs what failed
  is skipped), so one run lists everything to fix, and each failure says how.
- Offline, it reads the kit as ``Kit.load`` would, but reports instead of raising:
  ``kit.toml``, the private keys' presence and modes, the CA against the pinned
  fingerprint, the chain from the CA to the client certificate, the key pair, and
  expiry (a warning within ``EXPIRY_WARNING``).
- Online, once the kit loads, it dials the coordinator over mTLS, calls the standard
  health service (``grpc.health.v1.Health/Check``) and reads the clock skew from the
  ``date`` initial metadata when the coordinator sends it.
- Time is an argument (``clock``), for expiry and skew.

The report's types are in ``check_report.py``, the online checks in
``coordinator_check.py``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from accord.core.private_files import too_open
from accord.crypto import agreement, credential, identity
from accord.errors import AccordError, ConfigError
from accord.participant.kit.certificates import (
    RENEW_FIX,
    ca_problem,
    chain_problems,
    fingerprint,
    is_for_key,
    load_ceremony_key,
    load_tls_key,
    validity_problem,
)
from accord.participant.kit.check_report import Check, CheckReport, CheckStatus
from accord.participant.kit.coordinator_check import check_coordinator
from accord.participant.kit.startup_kit import (
    PRIVATE_FILES,
    REPACKAGE_FIX,
    Kit,
    KitManifest,
    KitPaths,
)
from accord.participant.terms import TERMS_FILE, load_kit_terms

__all__ = ["EXPIRY_WARNING", "check"]

EXPIRY_WARNING = dt.timedelta(days=30)
"""``check`` warns when the certificate expires sooner than this."""


def check(
    kit_dir: Path,
    *,
    timeout_s: float = 5.0,
    online: bool = True,
    clock: Callable[[], float] = time.time,
) -> CheckReport:
    """Preflight a kit: files, permissions, pin, chain, keys, expiry, then the coordinator.

    Every check runs even when an earlier one fails (a check that needs what failed is
    skipped), so one run lists everything to fix.

    Args:
        kit_dir: the kit folder.
        timeout_s: how long to wait for the coordinator's health answer.
        online: False skips the coordinator and clock-skew checks.
        clock: seconds since the epoch, for expiry and skew.

    Returns:
        The report; ``report.ok`` is False when any check failed.
    """
    paths = KitPaths(Path(kit_dir))
    checks: list[Check] = []
    now = dt.datetime.fromtimestamp(clock(), dt.timezone.utc)

    manifest, read = _check_manifest(paths)
    checks.append(read)

    checks.append(_check_private_files(paths))

    ca = _try_certificate(paths.ca_cert)
    certificate = _try_certificate(paths.tls_cert)
    checks.append(_check_pin(paths, manifest, ca))
    checks.append(_check_ca(paths, manifest, ca))
    checks.append(_check_chain(paths, manifest, ca, certificate))
    checks.append(_check_keys(paths, certificate))
    checks.append(_check_certified_keys(paths, manifest, ca, certificate, now))
    checks.append(_check_validity(certificate, ca, now))
    checks.append(_check_ledger_key(paths))
    if (paths.root / TERMS_FILE).exists():
        checks.append(_check_terms(paths))

    checks.extend(_online_checks(paths, online, timeout_s, clock))
    return CheckReport(paths.root, tuple(checks))


def _check_manifest(paths: KitPaths) -> tuple[KitManifest | None, Check]:
    """``kit.toml``: whose kit it is and whom it dials."""
    try:
        manifest = KitManifest.read(paths.root)
    except AccordError as error:
        return None, Check("kit file", CheckStatus.FAIL, str(error), REPACKAGE_FIX)
    return manifest, Check(
        "kit file",
        CheckStatus.PASS,
        f"{manifest.participant_id} in federation {manifest.federation_id}, "
        f"coordinator {manifest.coordinator}",
    )


def _online_checks(
    paths: KitPaths, online: bool, timeout_s: float, clock: Callable[[], float]
) -> list[Check]:
    """The coordinator and clock-skew checks, or why they were skipped."""
    if not online:
        return [
            Check("coordinator", CheckStatus.SKIP, "offline check (--offline)"),
            Check("clock skew", CheckStatus.SKIP, "offline check (--offline)"),
        ]
    try:
        kit = Kit.load(paths.root)
    except AccordError:
        # The offline checks above have already said why; they cover everything load checks.
        reason = "skipped until the kit loads"
        return [
            Check("coordinator", CheckStatus.SKIP, reason, "fix the failures above"),
            Check("clock skew", CheckStatus.SKIP, reason),
        ]
    return check_coordinator(kit, timeout_s, clock)


def _check_terms(paths: KitPaths) -> Check:
    """The federation terms the kit carries, signed by its pinned CA (`crypto/terms.py`)."""
    name = "federation terms"
    try:
        terms = load_kit_terms(paths.root, paths.ca_cert.read_bytes())
    except (AccordError, OSError) as error:
        return Check(
            name, CheckStatus.FAIL, str(error), "ask the operator for the signed terms again"
        )
    assert terms is not None
    return Check(
        name,
        CheckStatus.PASS,
        f"signed by the CA: {terms.profile.value}, threshold >= {terms.threshold}, cohort >= "
        f"{terms.min_cohort}, adapter {terms.adapter_parameters}",
    )


def _check_ledger_key(paths: KitPaths) -> Check:
    """The coordinator's ledger key the kit pins, certified by the CA (see `startup_kit`)."""
    name = "coordinator ledger key"
    try:
        kit = Kit.load(paths.root)
    except AccordError as error:
        if "ledger" not in str(error):
            return Check(name, CheckStatus.SKIP, "the kit does not load (see the checks above)")
        return Check(name, CheckStatus.FAIL, str(error), REPACKAGE_FIX)
    if kit.coordinator_ledger_key is None:
        return Check(
            name,
            CheckStatus.FAIL,
            "the kit pins no coordinator ledger key (packaged before kits did); the daemon "
            "refuses it",
            "ask the operator to run `accord provision ledger-key` and approve your request "
            f"again, then {REPACKAGE_FIX}",
        )
    return Check(
        name,
        CheckStatus.PASS,
        f"pinned {kit.coordinator_ledger_key.hex()[:16]}…, certified by the CA",
    )


def _check_private_files(paths: KitPaths) -> Check:
    missing: list[str] = []
    exposed: list[tuple[Path, int]] = []
    for name in PRIVATE_FILES:
        path = paths.root / name
        try:
            mode = too_open(path)
        except FileNotFoundError:
            missing.append(name)
            continue
        if mode is not None:
            exposed.append((path, mode))
    if missing:
        return Check(
            "private keys",
            CheckStatus.FAIL,
            f"missing: {', '.join(missing)}",
            "copy the keys `accord kit request` made into the kit folder, or " + REPACKAGE_FIX,
        )
    if exposed:
        listed = ", ".join(f"{path.name} (mode {mode:o})" for path, mode in exposed)
        files = " ".join(str(path) for path, _ in exposed)
        return Check(
            "private keys",
            CheckStatus.FAIL,
            f"readable by group or others: {listed}",
            f"chmod 600 {files}",
        )
    return Check("private keys", CheckStatus.PASS, "present, mode 600")


def _check_pin(paths: KitPaths, manifest: KitManifest | None, ca: x509.Certificate | None) -> Check:
    if ca is None:
        return Check(
            "CA fingerprint",
            CheckStatus.FAIL,
            f"{paths.ca_cert} missing or not PEM",
            REPACKAGE_FIX,
        )
    if manifest is None:
        return Check("CA fingerprint", CheckStatus.SKIP, "kit.toml unreadable")
    actual = fingerprint(ca)
    if actual != manifest.ca_fingerprint:
        return Check(
            "CA fingerprint",
            CheckStatus.FAIL,
            f"ca.pem is {actual}, kit.toml pins {manifest.ca_fingerprint}",
            "ca.pem is not the CA you pinned: confirm the fingerprint with the operator out of "
            "band, then " + REPACKAGE_FIX,
        )
    return Check("CA fingerprint", CheckStatus.PASS, f"ca.pem matches the pin {actual[:16]}…")


def _check_ca(paths: KitPaths, manifest: KitManifest | None, ca: x509.Certificate | None) -> Check:
    if ca is None or manifest is None:
        return Check("CA certificate", CheckStatus.SKIP, "no CA certificate or kit.toml")
    problem = ca_problem(ca, manifest.federation_id)
    if problem:
        return Check("CA certificate", CheckStatus.FAIL, problem, REPACKAGE_FIX)
    return Check("CA certificate", CheckStatus.PASS, f"CA of federation {manifest.federation_id}")


def _check_chain(
    paths: KitPaths,
    manifest: KitManifest | None,
    ca: x509.Certificate | None,
    certificate: x509.Certificate | None,
) -> Check:
    if certificate is None:
        return Check(
            "certificate chain",
            CheckStatus.FAIL,
            f"{paths.tls_cert} missing or not PEM",
            REPACKAGE_FIX,
        )
    if ca is None or manifest is None:
        return Check("certificate chain", CheckStatus.SKIP, "no CA certificate or kit.toml")
    problems = chain_problems(ca, certificate, manifest.participant_id, manifest.federation_id)
    if problems:
        return Check("certificate chain", CheckStatus.FAIL, "; ".join(problems), REPACKAGE_FIX)
    return Check(
        "certificate chain",
        CheckStatus.PASS,
        f"tls.pem (CN={manifest.participant_id}, clientAuth) issued by ca.pem",
    )


def _check_keys(paths: KitPaths, certificate: x509.Certificate | None) -> Check:
    # Permissions are the "private keys" check's business; here only the contents count.
    try:
        tls_key = load_tls_key(_read_key_bytes(paths.tls_key), paths.tls_key)
        identity.load_private(_read_key_bytes(paths.identity_key), what=str(paths.identity_key))
        load_ceremony_key(_read_key_bytes(paths.ceremony_key), paths.ceremony_key)
    except AccordError as error:
        return Check(
            "key pair",
            CheckStatus.FAIL,
            str(error),
            "restore the keys `accord kit request` made (they cannot be re-issued), or start "
            "over with `accord kit request`",
        )
    if certificate is None:
        return Check("key pair", CheckStatus.SKIP, "no certificate to match")
    if not is_for_key(certificate, tls_key):
        return Check(
            "key pair",
            CheckStatus.FAIL,
            "tls.pem is for another key than tls.key",
            "package the response that answers this kit's own request: " + REPACKAGE_FIX,
        )
    return Check(
        "key pair", CheckStatus.PASS, "tls.key matches tls.pem; identity and ceremony keys read"
    )


def _check_certified_keys(
    paths: KitPaths,
    manifest: KitManifest | None,
    ca: x509.Certificate | None,
    certificate: x509.Certificate | None,
    now: dt.datetime,
) -> Check:
    """The CA certified this kit's identity and ceremony keys (what the other members check)."""
    name = "certified keys"
    if manifest is None or ca is None or certificate is None:
        return Check(name, CheckStatus.SKIP, "no CA certificate, certificate or kit.toml")
    try:
        identity_private = identity.load_private(
            _read_key_bytes(paths.identity_key), what=str(paths.identity_key)
        )
        ceremony_private = load_ceremony_key(
            _read_key_bytes(paths.ceremony_key), paths.ceremony_key
        )
    except AccordError:
        return Check(name, CheckStatus.SKIP, "the keys do not load (see the key pair check)")
    try:
        credential.verify_member(
            ca,
            certificate.public_bytes(serialization.Encoding.DER),
            participant_id=manifest.participant_id,
            identity_public=identity.public_from_private(identity_private),
            ceremony_public=agreement.public_key(ceremony_private),
            now=now,
        )
    except AccordError as error:
        return Check(
            name,
            CheckStatus.FAIL,
            f"{error}; the other members will refuse this participant's messages",
            credential.REISSUE_FIX,
        )
    return Check(name, CheckStatus.PASS, "tls.pem certifies this kit's identity and ceremony keys")


def _check_validity(
    certificate: x509.Certificate | None, ca: x509.Certificate | None, now: dt.datetime
) -> Check:
    if certificate is None:
        return Check("certificate validity", CheckStatus.SKIP, "no certificate")
    problem = validity_problem(certificate, now)
    if problem is None and ca is not None:
        problem = validity_problem(ca, now, what="the CA")
    if problem is not None:
        return Check("certificate validity", CheckStatus.FAIL, problem[0], problem[1])
    left = certificate.not_valid_after_utc - now
    until = f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if left < EXPIRY_WARNING:
        return Check(
            "certificate validity",
            CheckStatus.WARN,
            f"expires in {left.days} days ({until})",
            "renew soon: " + RENEW_FIX,
        )
    return Check(
        "certificate validity", CheckStatus.PASS, f"valid until {until} ({left.days} days)"
    )


def _try_certificate(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _read_key_bytes(path: Path) -> bytes:
    """Read a private key file whatever its mode (for ``check``, which reports modes apart)."""
    try:
        return path.read_bytes()
    except OSError:
        raise ConfigError(
            f"{path}: private key missing (restore it, or start over with `accord kit request`)"
        ) from None
