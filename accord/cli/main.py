"""The `accord` command: one entry point, each role contributes its own commands.

    accord demo                    a coordinator and N participants on this machine
    accord coordinator serve       run the coordinator service
    accord participant run         run one participant daemon
    accord provision               operator: the CA, approving and revoking participants
    accord kit                     participant: keys, request, startup kit, preflight check
    accord audit                   verify the ledgers; privacy budgets and contributions

An `AccordError` is reported as `TypeName: message` with exit status 2, in one place
(`accord.core.commands.ReportingGroup`); any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import typer

from accord import __version__
from accord.audit.commands import audit_app
from accord.cli.provision import kit_app, provision_app
from accord.coordinator.cli import app as coordinator_app
from accord.core.commands import ReportingGroup
from accord.demo.command import demo
from accord.participant.cli import app as participant_app

app = typer.Typer(
    cls=ReportingGroup,
    name="accord",
    help="Accord: enterprises fine-tune one model together; no one, not even the "
    "coordinator, sees another's update.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"accord {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Accord: federated fine-tuning of LoRA adapters where updates stay hidden.

    Start with `accord demo --insecure-plaintext --profile none`, which runs a
    coordinator and three participants on this machine. See README.md and docs/.
    """


app.command(
    "demo",
    help="Run a coordinator and N participant daemons on this machine, as separate "
    "processes talking gRPC over loopback, and show the rounds live.",
)(demo)
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(participant_app, name="participant")
app.add_typer(provision_app, name="provision")
app.add_typer(kit_app, name="kit")
app.add_typer(audit_app, name="audit")
