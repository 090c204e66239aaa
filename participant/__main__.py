"""`python -m accord.participant run --config FILE`: what `accord demo` starts."""

import sys

from accord.cli.main import app

app(args=["participant", *sys.argv[1:]], prog_name="accord")
