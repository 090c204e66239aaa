"""`accord participant ...`: a participant's commands."""

from __future__ import annotations

from pathlib import Path

import typer

from accord.core import configfile
from accord.core.commands import ReportingGroup
from accord.participant.config import ParticipantConfig
from accord.participant.data.quality import check_data_command

app = typer.Typer(
    cls=ReportingGroup,
    help="Run a participant daemon: it trains locally and uploads only protected updates.",
    no_args_is_help=True,
)


@app.command()
def run(
    config: Path = typer.Option(
        ...,
        "--config",
        "-c",
        help="TOML file with a `participant` table (see participant/config.py for every field); "
        "`kit = DIR` names the startup kit from `accord kit package` or `accord provision`.",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        "-d",
        help="Folder of local training data (manifest.jsonl, labels.json, images/; see "
        "docs/ml.md); overrides the file's data_dir. Check it first with `accord participant "
        "check-data DIR`.",
    ),
    insecure_plaintext: bool = typer.Option(
        False,
        "--insecure-plaintext",
        help="Connect without TLS (loopback debugging and --profile none only); by default the "
        "daemon connects over mTLS with its startup kit.",
    ),
) -> None:
    """Enrol with the coordinator and take part in rounds until the federation finishes.

    Keeps its state in `state_dir`: the global adapter after every round
    (`adapters/round-NNNN/`, PEFT format), `metrics.jsonl`, `state.json` and
    `upload.json` (to resume after a restart without training or uploading a round twice)
    and `participant.log` (JSON lines, never a payload).
    """
    overrides: dict[str, object] = {"insecure_plaintext": True} if insecure_plaintext else {}
    if data is not None:
        overrides["data_dir"] = str(data.resolve())
    settings = configfile.load(config, ParticipantConfig, "participant", overrides=overrides)
    configfile.check_writable_folder(
        settings.state_dir, source=config, section="participant", field="state_dir"
    )
    from accord.core import logs
    from accord.participant.daemon import ParticipantDaemon

    daemon = ParticipantDaemon(settings, log=logs.configure("participant", settings.log_file))
    daemon.run()


app.command("check-data")(check_data_command)


@app.command("describe-model")
def describe_model_command(
    config: Path = typer.Option(
        ..., "--config", "-c", help="the participant's TOML file (its base_model and training)"
    ),
) -> None:
    """Print the base-model hash and adapter size this participant's settings train: the
    operator copies them into the federation file's [terms] table before signing it."""
    from accord.participant.terms import describe_model

    settings = configfile.load(config, ParticipantConfig, "participant")
    model_hash, parameters = describe_model(settings)
    typer.echo("[terms]")
    typer.echo(f'base_model_hash = "{model_hash}"')
    typer.echo(f"adapter_parameters = {parameters}")
