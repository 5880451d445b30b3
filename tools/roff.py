"""roff helpers shared by the man page generators (metadata2man.py, cli2man.py)."""

from __future__ import annotations

import datetime
import os
from typing import Optional


def roff_escape(text: str) -> str:
    """Escape running text for roff: backslashes, and control characters at line start."""
    text = text.replace("\\", "\\e")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n"))


def roff_literal(text: str) -> str:
    """Escape a name or command: as running text, with '-' as an ASCII minus."""
    return roff_escape(text).replace("-", "\\-")


def page_date(explicit: Optional[str]) -> str:
    """The page's date: given, else SOURCE_DATE_EPOCH (reproducible builds), else today (UTC)."""
    if explicit:
        return explicit
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
            if epoch else datetime.datetime.now(tz=datetime.timezone.utc))
    return when.strftime("%Y-%m-%d")
