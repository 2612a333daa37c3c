"""Caps on stored text: a model's answer, thinking or reasoning is kept up to a length, and
what was cut is recorded beside it (the `cut` column: field -> original length)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Cuts"]


@dataclass
class Cuts:
    """Collects the original lengths of the fields a row's caps cut."""

    lengths: dict[str, int] = field(default_factory=dict)

    def cap(self, name: str, text: str, limit: int) -> str:
        if len(text) <= limit:
            return text
        self.lengths[name] = len(text)
        return text[:limit]

    def cap_optional(self, name: str, text: str | None, limit: int) -> str | None:
        return None if text is None else self.cap(name, text, limit)

    @property
    def record(self) -> dict[str, int] | None:
        """The `cut` column's value: None when nothing was cut."""
        return dict(self.lengths) or None
