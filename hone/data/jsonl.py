"""Read a JSONL file row by row, with one-line errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def read_jsonl(path: Path, parse: Callable[[Any, str], T], error: type[Exception], what: str = "dataset file") -> list[T]:
    """``parse(row, where)`` of each non-blank line of ``path``; ``where`` names the file and line for messages.

    A missing file, a line that is not JSON and a file with no rows raise ``error`` with one line
    that says which. ``parse`` raises ``error`` for a row that does not fit.
    """
    if not path.is_file():
        raise error(f"{what} '{path}' not found")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{what} '{path}' line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: invalid JSON ({exc.msg})") from None
        rows.append(parse(row, where))
    if not rows:
        raise error(f"{what} '{path}' is empty")
    return rows
