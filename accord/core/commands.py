"""The one place where a command's `AccordError` becomes a message and an exit status.

Every typer app of Accord (the root `accord`, each role's, `provision`, `kit`, `audit`)
is made with `ReportingGroup`, so that it reports errors the same way whether it runs
under `accord` or on its own (`python -m accord.coordinator`, tests, scripts): an
`AccordError` prints as `TypeName: message` on stderr and exits with status 2; an
`InternalError` or any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from accord.errors import AccordError, InternalError

ERROR_EXIT_STATUS = 2
"""Exit status of a command that ended with an `AccordError` (a user's or peer's mistake)."""


class ReportingGroup(TyperGroup):
    """A command group that turns an `AccordError` into a one-line message and status 2."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click; its Context is private
        try:
            return super().invoke(ctx)
        except InternalError:
            raise  # a bug: keep the traceback
        except AccordError as error:
            typer.echo(f"{type(error).__name__}: {error}", err=True)
            raise typer.Exit(ERROR_EXIT_STATUS) from None
