"""Caps on text: a model's answer, thinking or reasoning is stored up to a length, and what was
cut is recorded beside it (the `cut` column: field -> original length); a file a user hands in
(a taxonomy, a spec) is read only up to a size."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from specstress.errors import InputError

__all__ = ["Cuts", "read_capped"]


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


def read_capped(file: Path, limit: int, label: str) -> bytes:
    """The bytes of a file the user named, refused when larger than `limit`; InputError, saying
    `label` (e.g. "spec file x.md"), on any problem."""
    try:
        size = file.stat().st_size
        if size > limit:
            raise InputError(f"{label} is too large: {size} bytes (limit {limit} bytes)")
        return file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {label}: {exc.strerror}") from exc
