"""Reading model output against its contract; a miss raises BadModelOutput with the reason."""

from __future__ import annotations

import json
import re
from typing import Any

from specstress.errors import BadModelOutput

__all__ = ["json_object", "neutralise", "text_after_tag"]

_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


def text_after_tag(text: str, tag: str) -> str | None:
    """The text after the last occurrence of `tag`, stripped; None when the tag is absent."""
    position = text.rfind(tag)
    if position < 0:
        return None
    return text[position + len(tag) :].strip()


def json_object(text: str) -> dict[str, Any]:
    """Parse a JSON object answer, tolerating a Markdown code fence around it."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body.startswith("{"):
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end <= start:
            raise BadModelOutput("the answer holds no JSON object")
        body = body[start : end + 1]
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError as exc:
        raise BadModelOutput(
            f"the answer is not valid JSON ({exc.msg} at char {exc.pos})"
        ) from None
    if not isinstance(parsed, dict):
        raise BadModelOutput("the answer is JSON but not an object")
    return parsed


def neutralise(text: str, tag: str) -> str:
    """Keep quoted model output from closing the delimiter it is wrapped in."""
    return text.replace(f"</{tag}", f"<\\/{tag}")
