"""A demo participant that drops out on purpose (`accord demo --drop NAME:STAGE`).

    python -m accord.demo.dropout --config FILE --stage STAGE [--round R]

runs the participant daemon as `python -m accord.participant run --config FILE` does,
with one fault injected through the daemon's `before_stage` hook: right before it acts
on STAGE of round R (default 1), the process ends abruptly, with exit status
`faults.DROPOUT_EXIT_STATUS` and no cleanup, as if its host had died. Only the demo
starts it; the participant package itself knows no faults.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import typer

from accord.core import configfile, logs
from accord.core.commands import ReportingGroup
from accord.crypto.messages import Stage
from accord.demo.faults import DROP_ROUND, DROPOUT_EXIT_STATUS, MASKING_STAGES

app = typer.Typer(cls=ReportingGroup, add_completion=False, no_args_is_help=True)


def exit_before(
    stage: Stage, round: int, log: logging.Logger | None = None
) -> Callable[[Stage, int], None]:
    """A `before_stage` hook that ends the process right before `stage` of `round`."""

    def hook(current: Stage, current_round: int) -> None:
        if current is stage and current_round == round:
            if log is not None:
                logs.event(log, "exiting_on_purpose", round=round, stage=stage.value)
            os._exit(DROPOUT_EXIT_STATUS)

    return hook


def participant_entry(config: Path, dropped_at: Stage | None) -> list[str]:
    """The module and arguments of a demo participant: with `--drop`, this one's."""
    if dropped_at is None:
        return ["accord.participant", "run", "--config", str(config)]
    return ["accord.demo.dropout", "--config", str(config), "--stage", dropped_at.value]


@app.command()
def run(
    config: Path = typer.Option(..., "--config", "-c", help="the participant's TOML file"),
    stage: str = typer.Option(
        ...,
        "--stage",
        help="the stage before which it drops out: " + ", ".join(s.value for s in MASKING_STAGES),
    ),
    round: int = typer.Option(DROP_ROUND, "--round", min=1, help="the round it drops out in"),
) -> None:
    """Take part like `accord participant run`, but die right before STAGE of round ROUND."""
    from accord.errors import UsageError
    from accord.participant.config import ParticipantConfig
    from accord.participant.daemon import ParticipantDaemon

    stages = {s.value: s for s in MASKING_STAGES}
    if stage not in stages:
        raise UsageError(f"--stage {stage}: must be one of {', '.join(stages)}")
    settings = configfile.load(config, ParticipantConfig, "participant")
    log = logs.configure("participant", settings.log_file)
    hook = exit_before(stages[stage], round, log)
    ParticipantDaemon(settings, log=log, before_stage=hook).run()


if __name__ == "__main__":
    app(prog_name="python -m accord.demo.dropout")
