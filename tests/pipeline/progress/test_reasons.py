"""Dead-letter reasons: LLM errors sorted into codes, and the unit each message holds back."""

from __future__ import annotations

from specstress.contracts import PairSampled, ResponseRequested, VerdictRequested
from specstress.db.schema import REASON_CODES
from specstress.llm.errors import LLMError
from specstress.pipeline.progress.reasons import TERMINAL_CODES, from_exception, unit_of


def test_llm_errors_get_their_codes() -> None:
    cases = {
        "bad_output": ("answered out of format 3 time(s)", "unparseable_output"),
        "terminal_quota": ("insufficient_quota", "quota_exhausted"),
        "terminal_client": ("HTTP 400: unknown parameter", "provider_refused"),
        "retryable": ("HTTP 503", "max_deliveries"),
    }
    for error_class, (message, code) in cases.items():
        reason = from_exception(LLMError(error_class, message))  # type: ignore[arg-type]
        assert reason.code == code
        assert reason.message == f"llm {error_class}: {message}"
    filtered = from_exception(
        LLMError("terminal_client", "The response was filtered due to the content_filter")
    )
    assert filtered.code == "content_filtered"


def test_messages_are_one_short_line() -> None:
    reason = from_exception(ValueError("first line\n" + "x" * 1000))
    assert reason.code == "max_deliveries"
    assert reason.message == "ValueError: first line"
    assert len(from_exception(ValueError("y" * 1000)).message) == 300


def test_codes_are_a_fixed_set() -> None:
    assert set(REASON_CODES) >= TERMINAL_CODES
    assert len(set(REASON_CODES)) == len(REASON_CODES)


def test_units_name_what_the_message_holds_back() -> None:
    answer = ResponseRequested(scenario_id="s1", model_key="m")
    assert unit_of("responder", ResponseRequested, answer) == ("responses", "s1/m")
    verdict = VerdictRequested(response_id="r1", judge="j", spec_id="spec")
    assert unit_of("compliance_judge", VerdictRequested, verdict) == ("verdicts", "r1/j/spec")
    pair = PairSampled(pair_id="p", value1="a", value2="b", taxonomy_version="t", index=0)
    assert unit_of("scenario_generator", PairSampled, pair) == ("scenarios", "p")
    # a payload that did not parse still has its stage
    assert unit_of("responder", ResponseRequested, None) == ("responses", None)
