"""Rows a database test seeds by hand: a value pair, its scenarios, spectra, answers and
verdicts, and paid provider calls, with the fields no such test is about filled in once here."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db import store
from specstress.llm.ledger import AttemptRecord


def pair_row(pair_id: str, value1: str = "honesty", value2: str = "kindness") -> dict[str, Any]:
    return {
        "pair_id": pair_id,
        "value1": value1,
        "value2": value2,
        "taxonomy_version": "t",
        "seed": 0,
        "run_index": 0,
    }


async def add_pair(engine: AsyncEngine, pair_id: str, **values: str) -> None:
    await store.insert_pairs(engine, [pair_row(pair_id, **values)])


async def add_scenario(
    engine: AsyncEngine,
    scenario_id: str,
    pair_id: str,
    variant: str,
    *,
    generator: str = "writer",
    query: str | None = None,
) -> None:
    await store.insert_scenario(
        engine,
        scenario_id=scenario_id,
        pair_id=pair_id,
        variant=variant,
        generator=generator,
        prompt_version="v",
        query=f"query {scenario_id}" if query is None else query,
    )


async def add_spectrum(engine: AsyncEngine, spectrum_id: str, pair_id: str) -> None:
    await store.insert_spectrum(
        engine,
        spectrum_id=spectrum_id,
        pair_id=pair_id,
        model_key="spectrum",
        prompt_version="v",
        value1_spectrum=[],
        value2_spectrum=[],
    )


async def add_answer(
    engine: AsyncEngine,
    response_id: str,
    scenario_id: str,
    model_key: str,
    *,
    text: str = "an answer",
    llm_call_hash: str = "h",
) -> None:
    await store.insert_response(
        engine,
        response_id=response_id,
        scenario_id=scenario_id,
        model_key=model_key,
        text=text,
        thinking=None,
        params={},
        llm_call_hash=llm_call_hash,
    )


# the fields of a verdict that no test seeding one by hand is about
VERDICT_FIELDS: dict[str, Any] = {
    "spec_id": "example",
    "spec_version": "1",
    "decision": "compliant",
    "reasoning": "r",
}


async def add_verdict(
    engine: AsyncEngine,
    verdict_id: str,
    response_id: str,
    scenario_id: str,
    judge: str,
    **changes: Any,
) -> None:
    """A verdict with VERDICT_FIELDS, of which `changes` replace or add some (cited_sections)."""
    await store.insert_verdict(
        engine,
        verdict_id=verdict_id,
        response_id=response_id,
        scenario_id=scenario_id,
        judge=judge,
        **{**VERDICT_FIELDS, **changes},
    )


def paid_attempt(
    request_hash: str,
    *,
    text: str,
    finish_reason: str | None = "stop",
    stage: str = "test",
    http_status: int | None = None,
    input_tokens: int,
    output_tokens: int,
    cost_usd: float,
) -> AttemptRecord:
    """A first attempt at a call that the provider answered with `text`."""
    response: dict[str, Any] = {
        "text": text,
        "thinking": None,
        "usage": {},
        "finish_reason": finish_reason,
    }
    return AttemptRecord(
        request_hash=request_hash,
        stage=stage,
        model_key="m",
        attempt=1,
        status="ok",
        latency_seconds=0.1,
        http_status=http_status,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost_usd,
        response=response,
    )
