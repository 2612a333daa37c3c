"""Reading model output against its contract; a miss raises BadModelOutput with the reason."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from specstress.errors import BadModelOutput, first_problem

__all__ = [
    "canonical",
    "canonical_field",
    "json_object",
    "keyed_entries",
    "text_after_tag",
    "validated",
]

M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


# emphasis and code marks a model may put around a tag
_MARKS = r"[*_`]*"


@functools.cache  # a handful of tags, each compiled once instead of on every answer
def _tag_pattern(tag: str) -> re.Pattern[str]:
    """The spellings of a `[Name]` tag that can only mean the tag.

    Anywhere in a line: the bracketed name in any case, with Markdown marks inside or around
    the brackets and a colon after (`**[User Question]**`, `[user query]:`). At the start of a
    line: the bare name as a heading or a line of its own (`### User Question`), or followed by
    a colon (`**User Question:** text`). A bare name in the middle of prose is not the tag.
    """
    words = r"[ \t]+".join(re.escape(w) for w in tag.strip("[] \t").split())
    around = rf"[ \t]*{_MARKS}[ \t]*"
    bracketed = rf"{_MARKS}\[{around}{words}{around}\]{_MARKS}(?:[ \t]*:)?{_MARKS}"
    start = rf"^[ \t>]*(?:\#{{1,6}}[ \t]*)?{_MARKS}[ \t]*{words}{around}"
    own_line = rf"{start}:?{around}$"
    with_colon = rf"{start}:{_MARKS}"
    return re.compile(rf"{bracketed}|{own_line}|{with_colon}", re.IGNORECASE | re.MULTILINE)


def text_after_tag(text: str, tag: str) -> str | None:
    """The text after the last occurrence of `tag` (in any of its unambiguous spellings,
    see `_tag_pattern`), stripped; None when the tag is absent."""
    matches = list(_tag_pattern(tag).finditer(text))
    if not matches:
        return None
    return text[matches[-1].end() :].strip()


def _fold(name: str) -> str:
    return re.sub(r"[\W_]+", "", name.casefold())


def canonical(value: str, choices: Sequence[str]) -> str | None:
    """The one of `choices` that `value` names, ignoring case, spaces and punctuation
    ("Non-Compliant.", "**non compliant**" -> "non-compliant"); None when it names none."""
    folded = _fold(value)
    matches = [c for c in choices if _fold(c) == folded]
    return matches[0] if len(matches) == 1 else None


def canonical_field(answer: dict[str, Any], field: str, choices: Sequence[str]) -> None:
    """Replace `answer[field]` by the choice it names, when it is a string naming exactly one;
    anything else is left for the caller's validation to report."""
    value = answer.get(field)
    if isinstance(value, str):
        found = canonical(value, choices)
        if found is not None:
            answer[field] = found


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


def keyed_entries(
    text: str, asked: Sequence[str], shown: Collection[str] | None = None
) -> dict[str, object]:
    """The entries of an answer keyed by model key: every asked key must be present; with
    `shown`, a key the prompt never showed is an error too (otherwise it is ignored)."""
    answer = json_object(text)
    missing = [key for key in asked if key not in answer]
    if missing:
        raise BadModelOutput(f"no entry for model key(s) {', '.join(missing)}")
    if shown is not None:
        unknown = sorted(key for key in answer if key not in shown)
        if unknown:
            raise BadModelOutput(
                f"entries for model key(s) not in the prompt: {', '.join(unknown)}"
            )
    return {key: answer[key] for key in asked}


def validated(model: type[M], value: object, context: str = "") -> M:
    """`value` as a `model`, or BadModelOutput naming the first problem after `context`."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise BadModelOutput(f"{context}{first_problem(exc)}") from None
