"""Which judge rulings an answer needs: one per configured judge under every spec that governs
the answer's model family. A family may be governed by several specs (say the vendor's spec and
a custom one); each verdict keeps the id and version of the spec it applied."""

from __future__ import annotations

from collections.abc import Iterable

from specstress.config import Config
from specstress.contracts import VerdictRequested
from specstress.db.store import ResponseRow

__all__ = ["verdict_requests"]


def verdict_requests(config: Config, answers: Iterable[ResponseRow]) -> list[VerdictRequested]:
    return [
        VerdictRequested(response_id=answer.response_id, judge=judge, spec_id=spec.id)
        for answer in answers
        for spec in config.specs
        if answer.family in spec.families
        for judge in config.roles.judges
    ]
