"""Read the files people hand to accord, with errors that say how to fix them.

Standard library `tomllib`, `json` and pydantic only, so every role may import it.

A role's TOML file holds one table named after the role (`[coordinator]`,
`[participant]`) and is loaded into its pydantic model. Relative paths in it are
resolved against the file's own folder, so a federation folder can be moved whole.
A validation failure becomes one `ConfigError` naming the file, the table, the field,
the bad value and the fix; the fix is the field's `description`:

    ConfigError: coordinator.toml [coordinator] threshold = 0: must be >= 2
    (least number of participants whose inputs are summed)

A versioned JSON document (the CA metadata, a kit request or response, the roster)
starts with `format_version` and names its `format`; `dump_versioned_json` writes one
and `read_versioned_json` reads it, refusing another format and a version newer than
the reader knows ("upgrade accord").
"""

from __future__ import annotations

import difflib
import enum
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, ValidationInfo

from accord.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib; tomli is the same parser
    import tomli as tomllib

ModelT = TypeVar("ModelT", bound=BaseModel)

BASE_DIR_CONTEXT = "base_dir"
"""Validation-context key holding the folder that relative paths resolve against."""


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative `value` against the config file's folder (or the working dir).

    Use as the body of a `field_validator` on each `Path` field.
    """
    base = (info.context or {}).get(BASE_DIR_CONTEXT)
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base or Path.cwd()) / path
    return path.resolve()


def load(
    path: Path,
    model: type[ModelT],
    section: str,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> ModelT:
    """Read table `[section]` of the TOML file at `path` into `model`.

    Args:
        path: the TOML file.
        model: a pydantic model (frozen, `extra="forbid"`).
        section: the one table the file must hold, e.g. `coordinator`.
        overrides: settings given on the command line; they win over the file's.

    Returns:
        The validated model; relative paths resolved against `path`'s folder.

    Raises:
        ConfigError: the file is missing, not TOML, lacks the table, holds unknown
            tables, or a value is invalid; the message names field, value and fix.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (write one, or start from `--help`)") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path.name}: not valid TOML ({error})") from None
    extra_tables = sorted(set(document) - {section})
    if extra_tables:
        raise ConfigError(
            f"{path.name}: unknown table [{extra_tables[0]}] (a {section} file holds "
            f"only [{section}])"
        )
    table = {**document.get(section, {}), **(overrides or {})}
    return validate(table, model, section, source=path.name, base_dir=path.resolve().parent)


def check_writable_folder(folder: Path, *, source: Path, section: str, field: str) -> None:
    """Make `folder` if it is absent, and check that this user can write files in it.

    A role calls this on its `state_dir` before it opens a log, a store or a ledger
    there, so that a bad setting is a `ConfigError` rather than a traceback.

    Args:
        folder: the resolved folder the setting names.
        source: the config file that set it (named in the error).
        section: the file's table, e.g. `participant`.
        field: the setting, e.g. `state_dir`.

    Raises:
        ConfigError: `folder` is a file, lies under a file, cannot be made, or cannot be
            written; the message names file, table, field, value and the fix.
    """
    where = f"{source.name} [{section}] {field} = {_toml_value(str(folder))}"
    fix = f"set {field} to a folder this user can create and write"
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{where}: is a file, not a folder ({fix}, or move the file away)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocked = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
        reason = (
            f"{blocked} is a file, not a folder"
            if blocked is not None
            else f"cannot create it ({error.strerror})"
        )
        raise ConfigError(f"{where}: {reason} ({fix})") from None
    probe = folder / f".accord-write-check-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"{where}: cannot write in it ({error.strerror}) ({fix}, or give this user write "
            "access to it)"
        ) from None


def validate(
    table: Mapping[str, Any],
    model: type[ModelT],
    section: str,
    *,
    source: str = "<settings>",
    base_dir: Path | None = None,
) -> ModelT:
    """Validate a mapping as `model`, translating errors as `load` does."""
    context = {BASE_DIR_CONTEXT: base_dir}
    try:
        return model.model_validate(dict(table), context=context)
    except ValidationError as error:
        raise ConfigError(_describe(error, model, table, section, source)) from None


def _describe(
    error: ValidationError,
    model: type[BaseModel],
    table: Mapping[str, Any],
    section: str,
    source: str,
) -> str:
    """Say what is wrong with the first error pydantic found, and how to fix it."""
    first = error.errors(include_url=False)[0]
    location = tuple(first["loc"])
    model, section, location = _sub_table(model, section, location, first["type"])
    where = f"{source} [{section}]"
    if not location:
        reason = first["msg"].removeprefix("Value error, ")
        return f"{where}: {reason}"
    field = _format_location(location)
    field_info = model.model_fields.get(str(location[0]))
    hint = f" ({field_info.description})" if field_info and field_info.description else ""
    kind = first["type"]
    if kind == "extra_forbidden":
        known = sorted(model.model_fields)
        close = difflib.get_close_matches(str(location[0]), known, n=1)
        suggestion = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(known)
        return f"{where} {field}: unknown setting ({suggestion})"
    if kind == "missing":
        return f"{where} {field}: required, but missing{hint}"
    value = _toml_value(first.get("input"))
    return f"{where} {field} = {value}: {_reason(first)}{hint}"


def _sub_table(
    model: type[BaseModel], section: str, location: tuple[int | str, ...], kind: str
) -> tuple[type[BaseModel], str, tuple[int | str, ...]]:
    """Descend into sub-tables, so that `[participant.training] lora_dropout` is named so.

    A location `(training, lora_dropout)` in `[participant]`, whose `training` is a
    model of its own, becomes `lora_dropout` in `[participant.training]`; a table-wide
    error of `training` (its own validator) is said of `[participant.training]` itself.
    """
    while location and isinstance(location[0], str):
        field_info = model.model_fields.get(location[0])
        sub = field_info.annotation if field_info is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            break
        if len(location) == 1 and kind != "value_error":
            break  # the table itself is missing or not a table
        model, section, location = sub, f"{section}.{location[0]}", location[1:]
    return model, section, location


def _format_location(location: Sequence[int | str]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _reason(detail: Any) -> str:
    """Rephrase pydantic's message as a short rule: `must be >= 2`."""
    kind = detail["type"]
    ctx = {
        key: f"{value:g}" if isinstance(value, float) else value
        for key, value in (detail.get("ctx") or {}).items()
    }
    rules = {
        "greater_than_equal": "must be >= {ge}",
        "greater_than": "must be > {gt}",
        "less_than_equal": "must be <= {le}",
        "less_than": "must be < {lt}",
        "string_too_short": "must have at least {min_length} characters",
        "string_too_long": "must have at most {max_length} characters",
        "too_short": "must have at least {min_length} items",
        "too_long": "must have at most {max_length} items",
        "string_pattern_mismatch": "must match {pattern}",
        "enum": "must be one of {expected}",
        "literal_error": "must be one of {expected}",
    }
    if kind in rules:
        try:
            return rules[kind].format(**ctx)
        except KeyError:
            pass
    message = str(detail["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _toml_value(value: Any) -> str:
    """Render a value the way it would be written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return _toml_value(value.value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items())
        return "{" + inner + "}"
    return repr(value)


def dumps(config: BaseModel, section: str, *, relative_to: Path | None = None) -> str:
    """Write `config` as a TOML file with one `[section]` table (None values omitted).

    Each field's description becomes a comment above it, so a written file documents
    itself. Paths inside `relative_to` (the file's future folder) are written relative
    to it. `load(dumps(c, s, relative_to=folder))` from that folder gives back `c`.
    """
    lines = [f"[{section}]"]
    tables: list[str] = []
    for name, info in type(config).model_fields.items():
        value = getattr(config, name)
        if value is None:
            continue
        if isinstance(value, BaseModel):
            # A nested settings group becomes its own `[section.name]` table.
            tables.append(dumps(value, f"{section}.{name}", relative_to=relative_to))
            continue
        if (
            isinstance(value, Path)
            and relative_to is not None
            and value.is_relative_to(relative_to)
        ):
            value = value.relative_to(relative_to)
        if info.description:
            lines.append(f"# {info.description}")
        lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join([*lines, *("\n" + table for table in tables)]) + "\n"


def dump_versioned_json(
    document: Mapping[str, Any], *, document_format: str, version: int
) -> bytes:
    """Serialize a JSON document as `read_versioned_json` reads it back.

    Args:
        document: the fields after the two header fields.
        document_format: its `format`, e.g. `"accord/roster"`.
        version: its `format_version`.

    Returns:
        UTF-8 JSON, `format_version` first and `format` second, indented, ending in a
        newline.
    """
    header = {"format_version": version, "format": document_format}
    return (json.dumps({**header, **document}, indent=2) + "\n").encode("utf-8")


def read_versioned_json(
    data_or_path: bytes | Path,
    *,
    expected_format: str,
    what: str,
    max_version: int,
    fix: str | None = None,
    source: str = "<bytes>",
) -> dict[str, Any]:
    """Parse a JSON document that names its `format` and carries a `format_version`.

    Args:
        data_or_path: the file, or its contents (UTF-8).
        expected_format: the `format` it must name, e.g. `"accord/roster"`.
        what: the document with its article, for errors: `"a certificate request"`.
        max_version: the newest `format_version` this code reads.
        fix: how to get a good file; ends the errors about a missing, unreadable or
            foreign file.
        source: names `data_or_path` in errors when it is bytes (a path names itself).

    Returns:
        The document, an object whose version is 1..`max_version`.

    Raises:
        ConfigError: the file is missing or unreadable, not UTF-8 JSON, not an object of
            `expected_format`, or its version is not a positive integer or is newer.
    """
    hint = f"; {fix}" if fix else ""
    if isinstance(data_or_path, (bytes, bytearray)):
        data = bytes(data_or_path)
    else:
        source = str(data_or_path)
        try:
            data = Path(data_or_path).read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such file" + (f" ({fix})" if fix else "")) from None
        except OSError as error:
            raise ConfigError(f"{source}: not {what} ({error}{hint})") from None
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{source}: not {what} ({error}{hint})") from None
    if not isinstance(document, dict) or document.get("format") != expected_format:
        raise ConfigError(f"{source}: not {what} (format must be {expected_format!r}{hint})")
    check_format_version(document.get("format_version"), source=source, max_version=max_version)
    return document


def check_format_version(version: Any, *, source: str, max_version: int) -> int:
    """Accept a file's `format_version` if this code reads it.

    Args:
        version: the value the file holds.
        source: names the file in errors.
        max_version: the newest version this code reads.

    Returns:
        `version`, a whole number in 1..`max_version`.

    Raises:
        ConfigError: not a positive integer, or newer than `max_version` (upgrade accord).
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{source} format_version = {version!r}: must be a positive integer")
    if version > max_version:
        raise ConfigError(
            f"{source} format_version = {version}: this accord reads up to {max_version} "
            "(upgrade accord)"
        )
    return version
