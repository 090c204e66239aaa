"""`python -m accord.coordinator serve --config FILE`: what `accord demo` starts."""

import sys

from accord.cli.main import app

app(args=["coordinator", *sys.argv[1:]], prog_name="accord")
