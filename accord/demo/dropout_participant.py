"""A participant daemon that dies on purpose: what `accord demo --drop NAME:STAGE` starts.

    python -m accord.demo.dropout_participant --config FILE --exit-before-stage STAGE --round R

runs `accord participant run --config FILE`'s daemon, except that right before it acts
on round R's task at STAGE (before it sends its message of that stage) the process
exits abruptly, with status `faults.DROPOUT_EXIT_STATUS`, as a crash would: no goodbye, no
cleanup. The daemon's fault-injection point is `ParticipantDaemon.before_stage`; the
participant package itself has no way to exit on purpose.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from accord.core import configfile, logs
from accord.core.commands import ReportingGroup
from accord.crypto.messages import Stage
from accord.demo.faults import DROPOUT_EXIT_STATUS
from accord.participant.config import ParticipantConfig
from accord.participant.daemon import ParticipantDaemon

app = typer.Typer(cls=ReportingGroup, add_completion=False)


class DroppingDaemon(ParticipantDaemon):
    """A `ParticipantDaemon` that exits the process before it acts on one stage of one round."""

    def __init__(
        self, config: ParticipantConfig, *, log: logging.Logger, stage: Stage, round: int
    ) -> None:
        super().__init__(config, log=log)
        self._exit_stage = stage
        self._exit_round = round

    def before_stage(self, stage: Stage, round: int) -> None:
        if stage is self._exit_stage and round == self._exit_round:
            logs.event(self._log, "exiting_on_purpose", round=round, stage=stage.value)
            sys.stdout.flush()
            os._exit(DROPOUT_EXIT_STATUS)


@app.callback(invoke_without_command=True)
def run(
    config: Path = typer.Option(..., "--config", "-c", help="The participant's TOML file."),
    exit_before_stage: Stage = typer.Option(
        ...,
        "--exit-before-stage",
        help="The stage before whose message the process exits (advertise, share, upload, "
        "consistency, unmask).",
    ),
    round: int = typer.Option(1, "--round", min=1, help="The round in which it exits."),
) -> None:
    """Run a participant daemon that exits (status 17) before it sends one stage's message."""
    settings = configfile.load(config, ParticipantConfig, "participant")
    configfile.check_writable_folder(
        settings.state_dir, source=config, section="participant", field="state_dir"
    )
    log = logs.configure("participant", settings.log_file)
    DroppingDaemon(settings, log=log, stage=exit_before_stage, round=round).run()


if __name__ == "__main__":
    app(prog_name="python -m accord.demo.dropout_participant")
