"""`accord coordinator ...`: the coordinator's commands."""

from __future__ import annotations

from pathlib import Path

import typer

from accord.coordinator.config import CoordinatorConfig
from accord.core import configfile
from accord.core.commands import ReportingGroup

app = typer.Typer(
    cls=ReportingGroup,
    help="Run the coordinator service: it routes the rounds and sums protected updates.",
    no_args_is_help=True,
)


@app.callback()
def coordinator() -> None:
    """Run the coordinator service: it routes the rounds and sums protected updates."""


@app.command()
def serve(
    config: Path = typer.Option(
        ...,
        "--config",
        "-c",
        help="TOML file with a [coordinator] table (see coordinator/config.py for every field).",
    ),
    insecure_plaintext: bool = typer.Option(
        False,
        "--insecure-plaintext",
        help="Serve without TLS (loopback debugging and --profile none only); by default the "
        "coordinator serves mTLS from the config's tls_dir and roster.",
    ),
) -> None:
    """Serve a federation until SIGTERM or Ctrl-C.

    Listens on `listen_host:listen_port` (port 0 picks one and writes it to
    `<state_dir>/port`), logs JSON lines to `<state_dir>/coordinator.log` and runs
    `rounds` rounds once the participants have enrolled.
    """
    overrides = {"insecure_plaintext": True} if insecure_plaintext else {}
    settings = configfile.load(config, CoordinatorConfig, "coordinator", overrides=overrides)
    configfile.check_writable_folder(
        settings.state_dir, source=config, section="coordinator", field="state_dir"
    )
    from accord.coordinator.server import serve as serve_forever
    from accord.core import logs

    serve_forever(settings, log=logs.configure("coordinator", settings.log_file))
