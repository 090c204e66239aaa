"""`accord audit`: verify the ledgers, report the privacy budgets spent and the contributions.

    accord audit verify PATH ...           every chain, signature and checkpoint; each
                                           participant's kept head of the federation
                                           ledger; each upload the federation ledger
                                           records against the participant's own ledger.
                                           Exit status 0 only when everything verifies.
    accord audit budget [--ledger PATH ...] [--accountant rdp|pld|prv|gdp] [--delta D]
                        [--json] [--plot FILE.png]
                                           epsilon per participant, recomputed from the
                                           released runs; the federation's record-level
                                           budget (maximum and composition) and its
                                           client-level budget
    accord audit contributions [--ledger PATH ...] [--json]
                                           per participant and round: samples, the
                                           validation gain it measured, flagged share

A PATH is a `ledger.jsonl` file or a folder searched for them (an `accord demo` workdir
holds `coordinator/ledger.jsonl` and `participants/<name>/ledger.jsonl`), along with
the `federation_head.json` files the participants kept, a `roster.json` and the
startup kits' `kit.toml`.

Trust (issue 12, finding 7): nothing found in the audited folder is trusted on its own,
since whoever could edit a ledger could also plant a roster or a key next to it. The
auditor pins the federation's CA (`--ca FILE.pem | FOLDER`, or `--ca-fingerprint
SHA256` to pin a `ca.pem` found under PATH). Then a participant's ledger is checked
with the identity key the CA certified in its roster entry's client certificate
(`--roster`, else a `roster.json` found), and the federation ledger with the
coordinator ledger key the CA certified in a kit's `kit.toml` (or the key the auditor
names with `--coordinator-key KIT_DIR | FILE.pub | HEX`). A key that does not chain to
the CA is not used: the ledger is checked with the key it names itself (or, for the
federation ledger, the key the participants kept), which proves it consistent, not who
wrote it, and the output says "not authenticated". `verify` exits 1 then, unless
`--unauthenticated` asks for the consistency check only.

A member the federation ledger names (an upload or a survivor) whose own ledger is
missing, or empty, is a failure of `verify` and is listed, never dropped, by `budget`
and `contributions`.

Nothing here reads or prints an update: the ledgers hold parameters, counts, scalars
the participants measured, and digests of protected uploads.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from accord.audit.ledgers import load
from accord.audit.output import (
    print_budget,
    print_contributions,
    print_verify,
    verify_json,
    write_plot,
)
from accord.audit.reports import budget_summary, contribution_rows
from accord.core import accounting
from accord.core.commands import ReportingGroup
from accord.errors import UsageError

audit_app = typer.Typer(
    cls=ReportingGroup,
    help="Verify the privacy ledgers and report the budgets spent and the contributions.",
    no_args_is_help=True,
)


# ---- commands ----

CA_HELP = (
    "The federation's CA certificate (ca.pem, or a kit folder holding it): only keys it "
    "certified are trusted."
)
CA_FINGERPRINT_HELP = (
    "SHA-256 of the federation's CA certificate: pins --ca, or a ca.pem found under the "
    "audited folders."
)


@audit_app.command()
def verify(
    paths: list[Path] = typer.Argument(
        ..., help="Ledger files, or folders searched for ledger.jsonl (e.g. a demo workdir)."
    ),
    roster: Path | None = typer.Option(
        None,
        "--roster",
        help="roster.json with the participants' identity keys (found in "
        "the folders when not given).",
    ),
    coordinator_key: str | None = typer.Option(
        None,
        "--coordinator-key",
        help="The coordinator ledger key the kits pin: a kit folder, its "
        "coordinator_ledger.pub, or 64 hex digits (found in kits under the folders when not "
        "given).",
    ),
    ca: Path | None = typer.Option(None, "--ca", help=CA_HELP),
    ca_fingerprint: str | None = typer.Option(None, "--ca-fingerprint", help=CA_FINGERPRINT_HELP),
    unauthenticated: bool = typer.Option(
        False,
        "--unauthenticated",
        help="Without a pinned CA, check consistency only (exit 0 though no key is authenticated).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Check every chain and signature; name each broken entry and how.

    Exit status 0 only when every ledger, kept head and recorded upload verifies, no
    member the federation ledger names lacks its ledger, and every key chains to the
    pinned CA (unless --unauthenticated).
    """
    audit = load(
        paths, roster, coordinator_key=coordinator_key, ca=ca, ca_fingerprint=ca_fingerprint
    )
    if json_output:
        typer.echo(json.dumps(verify_json(audit), indent=2))
    else:
        print_verify(audit)
    if not audit.ok or not (audit.authenticated or unauthenticated):
        raise typer.Exit(1)


@audit_app.command()
def budget(
    ledger: list[Path] = typer.Option(
        [], "--ledger", "-l", help="Ledger file or folder (repeatable); default: this folder."
    ),
    accountant: str = typer.Option(
        accounting.DEFAULT_ACCOUNTANT,
        "--accountant",
        help="rdp (default) or pld (dp-accounting), prv (needs opacus), or gdp (an "
        "approximation that may understate epsilon).",
    ),
    delta: float | None = typer.Option(
        None, "--delta", help="Report epsilon at this delta (default: each ledger's own)."
    ),
    roster: Path | None = typer.Option(None, "--roster", help="roster.json with identity keys."),
    coordinator_key: str | None = typer.Option(
        None, "--coordinator-key", help="The pinned coordinator ledger key (see `verify`)."
    ),
    ca: Path | None = typer.Option(None, "--ca", help=CA_HELP),
    ca_fingerprint: str | None = typer.Option(None, "--ca-fingerprint", help=CA_FINGERPRINT_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write epsilon over rounds per participant to this PNG file."
    ),
) -> None:
    """Epsilon per participant and for the federation, recomputed from the ledgers.

    Exit status 1 when a ledger does not verify (its numbers are shown but untrusted) or
    a member's ledger is missing (listed, with no epsilon).
    """
    if accountant not in accounting.ACCOUNTANTS:
        raise UsageError(f"--accountant {accountant}: one of {', '.join(accounting.ACCOUNTANTS)}")
    audit = load(
        ledger, roster, coordinator_key=coordinator_key, ca=ca, ca_fingerprint=ca_fingerprint
    )
    summary = budget_summary(audit, accountant=accountant, delta=delta)
    if plot is not None:
        write_plot(summary, plot)
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
    else:
        print_budget(summary, audit, plot)
    if not audit.ok:
        raise typer.Exit(1)


@audit_app.command()
def contributions(
    ledger: list[Path] = typer.Option(
        [], "--ledger", "-l", help="Ledger file or folder (repeatable); default: this folder."
    ),
    roster: Path | None = typer.Option(None, "--roster", help="roster.json with identity keys."),
    ca: Path | None = typer.Option(None, "--ca", help=CA_HELP),
    ca_fingerprint: str | None = typer.Option(None, "--ca-fingerprint", help=CA_FINGERPRINT_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Per participant and round: samples, validation gain, flagged share (no update is shown).

    Exit status 1 when a ledger does not verify or a member's ledger is missing (its
    rounds are listed as missing).
    """
    audit = load(ledger, roster, ca=ca, ca_fingerprint=ca_fingerprint)
    rows = contribution_rows(audit)
    if json_output:
        document = {
            "rows": rows,
            "verified": audit.ok,
            "authenticated": audit.authenticated,
            "missing": [m.to_json() for m in audit.missing],
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        print_contributions(rows, audit)
    if not audit.ok:
        raise typer.Exit(1)
