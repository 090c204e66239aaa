"""`python -m accord.participant run --config FILE`: what `accord demo` starts."""

from accord.participant.cli import app

app(prog_name="accord participant")
