"""`python -m accord ...` is the `accord` command."""

from accord.cli.main import app

app(prog_name="accord")
