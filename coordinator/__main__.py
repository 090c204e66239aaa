"""`python -m accord.coordinator serve --config FILE`: what `accord demo` starts."""

from accord.coordinator.cli import app

app(prog_name="accord coordinator")
