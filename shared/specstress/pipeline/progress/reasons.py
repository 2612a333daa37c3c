"""Why a message was dead-lettered, and which unit of which completeness stage it held back.

A failure is sorted into one code of `REASON_CODES` with a short message that names the cause
and never repeats the payload, a model's answer or a SQL statement: database errors are told
by their SQLSTATE alone, because their text quotes the statement and its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError

from specstress import contracts
from specstress.db.schema import REASON_CODES
from specstress.llm import LLMError

__all__ = [
    "REASON_CODES",
    "TERMINAL_CODES",
    "Reason",
    "from_exception",
    "from_llm_error",
    "response_unit",
    "unit_of",
    "verdict_unit",
]

MESSAGE_CHARS = 300
# failures no later delivery can mend: dead-lettered at once instead of retried (a retry of a
# responder would buy the same answer again only to be refused again)
TERMINAL_CODES = frozenset({"invalid_bytes", "oversize"})
# SQLSTATE -> code; classes 22 (data exception) and 23 (integrity) otherwise fall to the class
_SQLSTATES = {
    "22021": "invalid_bytes",  # character_not_in_repertoire (e.g. a NUL byte in text)
    "22P05": "invalid_bytes",  # untranslatable_character (e.g. \u0000 in jsonb)
    "22001": "oversize",  # string_data_right_truncation
    "54000": "oversize",  # program_limit_exceeded (e.g. an index row too large)
    "54001": "oversize",  # statement_too_complex
}
_CONTENT_FILTER_WORDS = ("content_filter", "content filter", "content policy", "safety system")


@dataclass(frozen=True)
class Reason:
    code: str
    message: str


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:MESSAGE_CHARS]


def from_llm_error(exc: LLMError) -> Reason:
    text = str(exc)
    if exc.error_class == "bad_output":
        code = "unparseable_output"
    elif exc.error_class == "terminal_quota":
        code = "quota_exhausted"
    elif exc.error_class == "terminal_client":
        lowered = text.lower()
        filtered = any(word in lowered for word in _CONTENT_FILTER_WORDS)
        code = "content_filtered" if filtered else "provider_refused"
    else:
        code = "max_deliveries"
    return Reason(code, _short(f"llm {exc.error_class}: {text}"))


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def from_exception(exc: BaseException) -> Reason:
    """The code and message of a handler failure that is not an LLM error."""
    if isinstance(exc, LLMError):
        return from_llm_error(exc)
    if isinstance(exc, UnicodeError):
        return Reason("invalid_bytes", f"text that cannot be encoded ({type(exc).__name__})")
    if isinstance(exc, DBAPIError | asyncpg.PostgresError):
        # asyncpg's own come from the statements run without SQLAlchemy (`specstress.db.direct`)
        state = _sqlstate(exc) or "?????"
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        name = type(orig if orig is not None else exc).__name__
        code = _SQLSTATES.get(state)
        if code is None and state.startswith("23"):
            code = "schema_invalid"
        elif code is None and state.startswith("22"):
            code = "invalid_bytes" if "Character" in name else "schema_invalid"
        message = f"the database refused the write: {name} (SQLSTATE {state})"
        return Reason(code or "max_deliveries", message)
    return Reason("max_deliveries", _short(f"{type(exc).__name__}: {exc}"))


# --- units: what a dead letter holds back, in the terms of the completeness model ------------


def response_unit(scenario_id: str, model_key: str) -> str:
    return f"{scenario_id}/{model_key}"


def verdict_unit(response_id: str, judge: str, spec_id: str) -> str:
    return f"{response_id}/{judge}/{spec_id}"


# (service, event) -> (completeness stage, unit id). A unit may be coarser than the stage's own
# units (a pair for its three scenarios, a scenario for its answers' classifications); the
# completeness queries match both.
_UNITS: dict[tuple[str, type[contracts.Event]], tuple[str, Callable[[Any], str]]] = {
    ("scenario_generator", contracts.PairSampled): ("scenarios", lambda e: e.pair_id),
    ("responder", contracts.ScenarioCreated): ("responses", lambda e: e.scenario_id),
    ("responder", contracts.ModelRegistered): ("responses", lambda e: f"model:{e.model_key}"),
    (
        "responder",
        contracts.ResponseRequested,
    ): ("responses", lambda e: response_unit(e.scenario_id, e.model_key)),
    ("spectrum_builder", contracts.ScenarioCreated): ("spectra", lambda e: e.pair_id),
    ("classifier", contracts.ResponseCreated): ("classifications", lambda e: e.scenario_id),
    ("classifier", contracts.ResponseAbandoned): ("classifications", lambda e: e.scenario_id),
    ("classifier", contracts.SpectraCreated): ("classifications", lambda e: e.pair_id),
    ("classifier", contracts.ClassificationsCreated): ("labels", lambda e: e.scenario_id),
    ("classifier", contracts.DisagreementFlagged): ("labels", lambda e: e.scenario_id),
    ("aggregator", contracts.ClassificationsCreated): ("disagreement", lambda e: e.scenario_id),
    ("compliance_judge", contracts.DisagreementFlagged): ("verdicts", lambda e: e.scenario_id),
    (
        "compliance_judge",
        contracts.VerdictRequested,
    ): ("verdicts", lambda e: verdict_unit(e.response_id, e.judge, e.spec_id)),
}
# the stage of a service's messages whose payload did not parse
_SERVICE_STAGE = {
    "scenario_generator": "scenarios",
    "responder": "responses",
    "spectrum_builder": "spectra",
    "classifier": "classifications",
    "aggregator": "disagreement",
    "compliance_judge": "verdicts",
}


def unit_of(
    service: str, event_type: type[contracts.Event], event: contracts.Event | None
) -> tuple[str, str | None]:
    """(stage, unit) of a message a service could not handle; unit None when unparsed."""
    found = _UNITS.get((service, event_type))
    if found is None:
        return _SERVICE_STAGE.get(service, service), None
    stage, unit = found
    return stage, None if event is None else unit(event)
