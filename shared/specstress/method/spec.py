"""A model spec: markdown whose headings may carry `{#anchor authority=...}` attribute blocks.

Judges receive the whole text verbatim; the parsed sections only let the rest of the project
refer to parts of it by anchor and authority level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from specstress.errors import InputError
from specstress.text import read_capped

__all__ = ["MAX_SPEC_BYTES", "Spec", "SpecSection", "load_spec"]

MAX_SPEC_BYTES = 5_000_000
_BUILTIN_SPECS = {"builtin:example": "example_spec.md"}

# CommonMark: up to three spaces of indent, 1-6 '#', then a space or the end of the line
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t](.*))?$")
# a fence is three or more backticks or tildes; a backtick fence's info string has no backticks
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}(?=[^`]*$)|~{3,})")
_ATTR_TOKEN = r"""#[^\s{}]+|\.[^\s{}]+|[A-Za-z_][\w.:-]*=(?:"[^"]*"|'[^']*'|[^\s{}"']+)"""
# Blank-separated tokens and a look-behind instead of a leading blank run keep matching
# linear on long or unclosed blocks; headings are user input.
_ATTR_BLOCK = re.compile(
    rf"(?<![^ \t])\{{[ \t]*((?:{_ATTR_TOKEN})(?:[ \t]+(?:{_ATTR_TOKEN}))*)[ \t]*\}}$"
)
_LINE_BREAK = re.compile(r"\r\n?|\n")


@dataclass(frozen=True)
class SpecSection:
    """A heading and the lines below it up to the next heading of any level."""

    anchor: str | None
    title: str
    level: int
    authority: str | None
    text: str


@dataclass(frozen=True)
class Spec:
    spec_id: str
    version: str
    text: str
    sections: tuple[SpecSection, ...]
    _by_anchor: dict[str, SpecSection] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen dataclasses only allow setting derived fields through object.__setattr__
        anchored = {s.anchor: s for s in self.sections if s.anchor is not None}
        object.__setattr__(self, "_by_anchor", anchored)

    def section(self, anchor: str) -> SpecSection:
        """The section with this anchor; KeyError when there is none."""
        return self._by_anchor[anchor]

    @property
    def anchors(self) -> frozenset[str]:
        """Every anchor the spec's headings define: what a judge may cite."""
        return frozenset(self._by_anchor)


def load_spec(path: str, spec_id: str, version: str) -> Spec:
    """Load `"builtin:example"` or a UTF-8 markdown file; InputError names any problem."""
    if path.startswith("builtin:"):
        resource = _BUILTIN_SPECS.get(path)
        if resource is None:
            raise InputError(
                f"unknown built-in spec {path!r}; available: {', '.join(_BUILTIN_SPECS)}"
            )
        data = resources.files("specstress").joinpath("data", resource).read_bytes()
        label = f"built-in spec {path}"
    else:
        file = Path(path)
        if not file.is_file():
            raise InputError(f"spec file not found: {path}")
        label = f"spec file {path}"
        data = read_capped(file, MAX_SPEC_BYTES, label)
    try:
        # utf-8-sig: a byte-order mark is an encoding artefact, not part of the spec
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{label} is not UTF-8 (byte {exc.start})") from exc
    if not text.strip():
        raise InputError(f"{label} is empty")
    return Spec(spec_id=spec_id, version=version, text=text, sections=_sections(text, label))


def _sections(text: str, label: str) -> tuple[SpecSection, ...]:
    # (heading line number, level, rest of the heading line, body lines)
    found: list[tuple[int, int, str, list[str]]] = []
    fence: str | None = None
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if fence is not None:
            # a fence closes on the same character, at least as long, with nothing after it
            closing = rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*"
            if re.fullmatch(closing, line):
                fence = None
        else:
            opening = _FENCE_OPEN.match(line)
            if opening:
                fence = opening.group(1)
            else:
                heading = _HEADING.match(line)
                if heading:
                    found.append((number, len(heading.group(1)), heading.group(2) or "", []))
                    continue
        if found:
            found[-1][3].append(line)

    sections = []
    seen: dict[str, int] = {}
    for number, level, content, body in found:
        anchor, authority, title = _heading_parts(content)
        if anchor is not None:
            if anchor in seen:
                raise InputError(
                    f"{label}: line {number}: anchor #{anchor} is already used on line "
                    f"{seen[anchor]}"
                )
            seen[anchor] = number
        sections.append(
            SpecSection(
                anchor=anchor,
                title=title,
                level=level,
                authority=authority,
                text=_trim_blank_lines(body),
            )
        )
    return tuple(sections)


def _heading_parts(content: str) -> tuple[str | None, str | None, str]:
    """Split heading text into (anchor, authority, title); unknown attributes are ignored."""
    anchor = authority = None
    content = content.strip()
    block = _ATTR_BLOCK.search(content)
    if block:
        content = content[: block.start()]
        for token in re.findall(_ATTR_TOKEN, block.group(1)):
            if token.startswith("#"):
                anchor = anchor or token[1:]
            elif token.startswith("authority="):
                authority = token.partition("=")[2].strip("\"'")
    title = content.rstrip(" \t")
    # CommonMark's optional closing sequence: trailing '#'s that stand alone ("C#" keeps its '#')
    unclosed = title.rstrip("#")
    if unclosed != title and (not unclosed or unclosed[-1] in " \t"):
        title = unclosed
    return anchor, authority, title.strip()


def _trim_blank_lines(lines: list[str]) -> str:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])
