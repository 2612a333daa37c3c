"""Text Postgres cannot store: NUL characters and invalid Unicode (lone surrogates, which a
JSON `\\ud800` escape yields, and bytes that are not UTF-8).

Model output is cleaned (the answer is worth keeping: a stray NUL says nothing about it); an
event payload holding such text is rejected, since ids and names that were altered would point
at nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REPLACEMENT", "bytes_problem", "clean", "storable", "text_problem", "value_problem"]

# a UTF-16 half that Python keeps in a str but no UTF-8 encoder accepts
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean(text: str) -> tuple[str, bool]:
    """`text` without NUL and with lone surrogates replaced by U+FFFD; True when it changed."""
    if "\0" not in text and _SURROGATE.search(text) is None:
        return text, False
    return _SURROGATE.sub(REPLACEMENT, text.replace("\0", "")), True


def storable(text: str) -> str:
    """`text` as Postgres accepts it (for records of bad input such as dead letters)."""
    return clean(text)[0]


def text_problem(text: str) -> str | None:
    """What makes `text` unstorable, briefly, or None when it is fine."""
    if "\0" in text:
        return f"NUL character at index {text.index(chr(0))}"
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:
        return f"lone surrogate U+{ord(surrogate.group()):04X} at index {surrogate.start()}"
    return None


def value_problem(value: Any, where: str = "") -> str | None:
    """The first unstorable string in a JSON-like value (str, list, dict), named by its path."""
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else f"{where or 'value'}: {problem}"
    if isinstance(value, Mapping):
        for key, item in value.items():
            key_problem = text_problem(str(key))
            if key_problem is not None:
                return f"{where or 'value'}: key: {key_problem}"
            found = value_problem(item, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = value_problem(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def bytes_problem(data: bytes) -> str | None:
    """What makes raw message bytes unstorable as text: invalid UTF-8 or a NUL byte."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    if "\0" in decoded:
        return f"NUL byte at offset {data.index(0)}"
    return None
