"""Everything the CLI prints passes through here: values from the trail and the database are
written by outsiders (a request path, an email address, a ban reason), and the admin's terminal
must show them, never obey them.

- Control characters (C0, DEL, C1, and the Unicode format controls such as bidi overrides) are
  shown as `\\xNN` / `\\uNNNN` escapes: an ESC in a path must not retitle or rewrite the terminal.
- Table cells are Rich `Text`, never markup: `[/x]@example.com` is text, not a closing tag.
- JSON is written with `ensure_ascii`, so it carries no raw control or non-ASCII byte at all.
"""

from __future__ import annotations

import io
import json
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(value: object) -> str:
    """`value` as text with every control or format character made visible and inert."""
    text = "" if value is None else str(value)
    if text.isprintable():  # the common case: nothing to do
        return text
    return "".join(
        _escape(c) if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") and c != " " else c for c in text
    )


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], width: int = 160) -> str:
    """A Rich table rendered to text; every cell is plain text (no markup), escaped."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    grid = Table(*columns)
    for row in rows:
        grid.add_row(*(Text(terminal_safe(cell)) for cell in row))
    console = Console(file=io.StringIO(), width=width, force_terminal=False)
    console.print(grid)
    rendered: str = console.file.getvalue()  # type: ignore[attr-defined]
    return rendered


def json_text(value: Any, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=True, default=str)
