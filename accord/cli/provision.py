"""`accord provision` (the operator) and `accord kit` (each enterprise): the provisioning CLI.

Two typer apps that `accord/cli/main.py` mounts as `accord provision` and `accord kit`.
The commands are thin: the operator's work lives in `accord.coordinator.operator`
(`ca`, `server_certs`, `approve`), the participant's in `accord.participant.kit`
(`packaging`, `startup_kit`, `preflight`), and each command only parses arguments, calls one of
them and prints the outcome. An `AccordError` is printed as `TypeName: message` on stderr
with exit status 2 (`accord.core.commands.ReportingGroup`); `accord kit check` exits 1 when a check
failed. Any other exception is a bug.

    accord provision FEDERATION_TOML --out DIR        everything, on one machine (demo)
    accord provision ca DIR --federation ID --coordinator HOST:PORT
    accord provision approve REQUEST --ca CA_DIR [--out RESPONSE]
    accord provision revoke NAME --ca CA_DIR
    accord provision ledger-key --ca CA_DIR --coordinator-dir DIR
    accord kit request --name NAME --out DIR
    accord kit package REQUEST_DIR RESPONSE --ca-fingerprint SHA256 [--out KIT_DIR]
    accord kit check KIT_DIR [--timeout S] [--offline]

The federation file (`deploy/federation.example.toml`) is validated with pydantic
(`extra="forbid"`); a bad file is one `ConfigError` naming the field, the value and
the fix. The all-in-one command makes every participant's keys on this machine, so
it is for one-machine federations and the demo only; real enterprises run
`accord kit request` on their own machines (docs/provisioning.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from accord.coordinator.operator.approve import approve, revoke
from accord.coordinator.operator.ca import (
    CA_KEY_FILE,
    DEFAULT_CA_VALIDITY_DAYS,
    DEFAULT_CERT_VALIDITY_DAYS,
    create_ca,
    load_ca,
)
from accord.coordinator.operator.server_certs import (
    DEFAULT_SERVER_HOSTS,
    issue_probe_cert,
    issue_server_cert,
)
from accord.core.commands import ReportingGroup
from accord.core.kitformat import TERMS_FILE, split_address, write_public
from accord.crypto.terms import sign_terms
from accord.errors import ConfigError
from accord.federation.provision import load_federation, provision_federation
from accord.participant.kit import packaging, preflight
from accord.participant.kit import startup_kit as kits
from accord.participant.kit.check_report import CheckStatus

__all__ = ["kit_app", "provision_app"]


class _DefaultCommandGroup(ReportingGroup):
    """Lets `accord provision FILE --out DIR` mean `accord provision federation FILE --out DIR`."""

    default_command = "federation"

    # `ctx` is typer's vendored click Context, which typer does not export under a public name.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


_out = Console()


def _say(text: str) -> None:
    # soft_wrap keeps a fingerprint on one line, so it can be copied whole.
    _out.print(text, markup=False, highlight=False, soft_wrap=True)


provision_app = typer.Typer(
    name="provision",
    cls=_DefaultCommandGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Operator: make the federation's CA, approve and revoke participants. "
    "`accord provision FEDERATION_TOML --out DIR` provisions a whole federation on this "
    "machine (demo and one-machine use).",
)

kit_app = typer.Typer(
    name="kit",
    cls=ReportingGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Participant: make your keys and request, package the startup kit, check it.",
)


@provision_app.command("federation")
def provision_command(
    federation_toml: Path = typer.Argument(
        ..., help="the federation file (see deploy/federation.example.toml)"
    ),
    out: Path = typer.Option(
        ..., "--out", help="a new folder: receives ca/, coordinator/ and kits/NAME/"
    ),
) -> None:
    """Provision everything from one file: CA, coordinator certificate, every kit."""
    federation = load_federation(federation_toml)
    result = provision_federation(federation, out)
    _say(
        f"federation {result.federation_id} (profile {result.profile.value}) provisioned in "
        f"{result.root}"
    )
    _say(f"  CA fingerprint (SHA-256): {result.ca_fingerprint}")
    _say(f"  CA key:       {result.ca_dir / CA_KEY_FILE} (keep it offline)")
    _say(
        f"  coordinator:  {result.coordinator_dir} (server.pem, server.key, ca.pem, roster.json, "
        "ledger.key)"
    )
    for name, folder in result.kits.items():
        _say(f"  kit {name}: {folder}")
    if federation.terms is None:
        _say(
            "warning: no [terms] table, so no signed terms: the coordinator's settings and the "
            "first enrolee's model stand unchecked (docs/provisioning.md, signed terms)"
        )
    _say("check a kit with: accord kit check KIT_DIR")


@provision_app.command("ca")
def ca_command(
    out: Path = typer.Argument(..., help="a new folder: receives ca/ and coordinator/"),
    federation: str = typer.Option(..., "--federation", help="the federation's id"),
    coordinator: str = typer.Option(
        ..., "--coordinator", help="host:port participants dial, e.g. coord.example.com:50051"
    ),
    host: list[str] = typer.Option(
        [], "--host", help="another name or address for the coordinator's certificate"
    ),
    ca_days: int = typer.Option(DEFAULT_CA_VALIDITY_DAYS, "--ca-days", min=1),
    cert_days: int = typer.Option(DEFAULT_CERT_VALIDITY_DAYS, "--cert-days", min=1),
) -> None:
    """Make a federation's CA and the coordinator's certificate, with an empty roster."""
    ca_dir, coordinator_dir = out / "ca", out / "coordinator"
    coordinator_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    authority = create_ca(
        ca_dir,
        federation,
        coordinator=coordinator,
        roster_path=coordinator_dir / "roster.json",
        validity_days=ca_days,
    )
    hosts = [split_address(coordinator)[0], *DEFAULT_SERVER_HOSTS, *host]
    issue_server_cert(ca_dir, coordinator_dir, hosts, validity_days=cert_days)
    issue_probe_cert(ca_dir, coordinator_dir, validity_days=cert_days)
    _say(f"CA of federation {federation} in {ca_dir} (keep ca.key offline)")
    _say(f"coordinator TLS files, ledger key and roster in {coordinator_dir}")
    _say(f"CA fingerprint (give it to each participant out of band): {authority.fingerprint}")


@provision_app.command("terms")
def terms_command(
    federation_toml: Path = typer.Argument(
        ..., help="the federation file with its [terms] table (deploy/federation.example.toml)"
    ),
    ca: Path = typer.Option(..., "--ca", help="the CA folder"),
    coordinator_dir: Path = typer.Option(
        ..., "--coordinator-dir", help="the coordinator's folder (its tls_dir)"
    ),
) -> None:
    """Sign the federation's terms with the CA: every response `approve` writes from now on
    carries them into the kit, and the coordinator holds its config to them."""
    federation = load_federation(federation_toml)
    if federation.terms is None:
        raise ConfigError(
            f"{federation_toml.name}: no [terms] table (add threshold, min_cohort, "
            "base_model_hash and adapter_parameters; `accord participant describe-model` "
            "prints the last two)"
        )
    authority = load_ca(ca)
    if authority.federation_id != federation.federation.id:
        raise ConfigError(
            f"{federation_toml.name} [federation] id = {federation.federation.id!r}: the CA "
            f"in {ca} is federation {authority.federation_id!r}"
        )
    terms = federation.terms.to_terms(federation.federation)
    signed = sign_terms(terms, authority.private_key())
    write_public(ca / TERMS_FILE, signed)
    write_public(coordinator_dir / TERMS_FILE, signed)
    _say(f"terms of federation {terms.federation_id} signed into {ca / TERMS_FILE}")
    _say(f'set `terms = "{coordinator_dir / TERMS_FILE}"` in the [coordinator] table')
    _say("approve every request again (or now) so that each kit carries the terms")


@provision_app.command("approve")
def approve_command(
    request: Path = typer.Argument(..., help="the request.json a participant sent"),
    ca: Path = typer.Option(..., "--ca", help="the CA folder"),
    out: Path | None = typer.Option(
        None, "--out", help="response file (default: NAME.response.json next to the request)"
    ),
    days: int = typer.Option(DEFAULT_CERT_VALIDITY_DAYS, "--days", min=1),
) -> None:
    """Sign a participant's request and add it to the roster."""
    response = approve(request, ca, out_path=out, validity_days=days)
    authority = load_ca(ca)
    _say(f"approved; send {response} back to the participant")
    _say(f"CA fingerprint (give it out of band, not with the file): {authority.fingerprint}")


@provision_app.command("ledger-key")
def ledger_key_command(
    ca: Path = typer.Option(..., "--ca", help="the CA folder"),
    coordinator_dir: Path = typer.Option(
        ..., "--coordinator-dir", help="the coordinator's folder (its tls_dir)"
    ),
) -> None:
    """Make the coordinator's ledger key and certify it, for a federation provisioned before
    kits pinned it (`provision` and `ca` make it already). Then approve every request again."""
    from accord.coordinator import federation_ledger as ledger

    certified = ledger.provision_key(load_ca(ca), coordinator_dir)
    _say(
        f"coordinator ledger key {certified.public_key.hex()} in "
        f"{coordinator_dir / ledger.PROVISIONED_KEY_FILE}, certified by the CA; every response "
        "`accord provision approve` writes now carries it, and kits pin it"
    )


@provision_app.command("probe-cert")
def probe_cert_command(
    ca: Path = typer.Option(..., "--ca", help="the CA folder"),
    coordinator_dir: Path = typer.Option(
        ..., "--coordinator-dir", help="the coordinator's folder (its tls_dir)"
    ),
    days: int = typer.Option(DEFAULT_CERT_VALIDITY_DAYS, "--days", min=1),
) -> None:
    """Issue the coordinator's health-probe client certificate (probe.pem, probe.key), for a
    federation provisioned before `provision` and `ca` made it."""
    cert, _ = issue_probe_cert(ca, coordinator_dir, validity_days=days)
    _say(f"probe certificate in {cert}: health checks only, it speaks for no participant")


@provision_app.command("revoke")
def revoke_command(
    name: str = typer.Argument(..., help="the participant to revoke"),
    ca: Path = typer.Option(..., "--ca", help="the CA folder"),
) -> None:
    """Revoke a participant; the running coordinator refuses it from its next request on."""
    entry = revoke(ca, name)
    _say(
        f"{entry.participant_id} revoked at {entry.revoked_at}; the coordinator refuses its "
        "certificate from the next request on (no restart needed)"
    )


@kit_app.command("request")
def request_command(
    name: str = typer.Option(..., "--name", help="your participant id, e.g. energy"),
    out: Path = typer.Option(..., "--out", help="a new folder for your keys and request"),
) -> None:
    """Make your private keys and a certificate request (keys never leave this machine)."""
    path = packaging.request(name, out)
    _say(f"wrote {path}: send only this file to the operator")
    _say(f"private keys (mode 600, keep them here): {', '.join(kits.PRIVATE_FILES)} in {out}")


@kit_app.command("package")
def package_command(
    request_dir: Path = typer.Argument(..., help="the folder `accord kit request` wrote"),
    response: Path = typer.Argument(..., help="the response file the operator sent"),
    ca_fingerprint: str = typer.Option(
        ..., "--ca-fingerprint", help="the CA's SHA-256 fingerprint, as the operator told you"
    ),
    out: Path | None = typer.Option(None, "--out", help="kit folder (default: REQUEST_DIR)"),
) -> None:
    """Check the response against the CA fingerprint and assemble your startup kit."""
    kit_dir = packaging.package(request_dir, response, ca_fingerprint, out or request_dir)
    _say(f"startup kit ready in {kit_dir}; check it with: accord kit check {kit_dir}")


@kit_app.command("check")
def check_command(
    kit_dir: Path = typer.Argument(..., help="the kit folder"),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="seconds to wait"),
    offline: bool = typer.Option(False, "--offline", help="skip reaching the coordinator"),
) -> None:
    """Preflight: certificates, chain, fingerprint, expiry, the coordinator, clock skew."""
    report = preflight.check(kit_dir, timeout_s=timeout, online=not offline)
    table = Table(title=f"accord kit check {kit_dir}", show_lines=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    table.add_column("fix")
    styles: dict[CheckStatus, str] = {
        CheckStatus.PASS: "green",
        CheckStatus.WARN: "yellow",
        CheckStatus.FAIL: "bold red",
        CheckStatus.SKIP: "dim",
    }
    for item in report.checks:
        table.add_row(
            item.name,
            f"[{styles[item.status]}]{item.status.value.upper()}[/]",
            _plain(item.detail),
            _plain(item.fix),
        )
    _out.print(table)
    if report.ok:
        _say("kit OK")
        return
    _say(f"{len(report.failures())} check(s) failed; apply the fixes above")
    raise typer.Exit(code=1)


def _plain(text: str) -> str:
    """Escape rich markup in text that came from files or errors."""
    return text.replace("[", "\\[")
