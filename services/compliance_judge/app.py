"""disagreement.flagged -> verdicts.requested (response x judge) -> verdicts.created.

Only answers of models whose family is governed by a configured spec are judged, each by every
configured judge against the whole spec. Majority / any-judge flags per answer and frequent
non-compliance per scenario are views over the verdicts, so they always reflect every verdict.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from specstress import ids
from specstress.config import SpecConfig
from specstress.contracts import DisagreementFlagged, VerdictCreated, VerdictRequested
from specstress.db import store
from specstress.errors import BadModelOutput
from specstress.llm.structured import OutputSchema
from specstress.method.parsing import canonical_field, json_object, validated
from specstress.method.spec import Spec, load_spec
from specstress.pipeline.compliance import verdict_requests
from specstress.pipeline.service import Service
from specstress.pipeline.stage import Stage, Unprocessable
from specstress.text import Cuts, quote

service = Service("compliance_judge")


Decision = Literal["compliant", "non-compliant", "ambiguous"]
DECISIONS: tuple[str, ...] = get_args(Decision)


class Verdict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    reasoning: str
    decision: Decision
    # anchors of the spec sections the judge relied on; optional, so the paper's contract
    # (reasoning and decision only) still parses
    cited_sections: list[str] = Field(default_factory=list, max_length=50)


VERDICT_SCHEMA = OutputSchema.of(Verdict, "verdict")


def parse_verdict(text: str, anchors: frozenset[str] = frozenset()) -> Verdict:
    """A verdict whose citations, if any, are anchors of the spec (a leading '#' is allowed);
    the decision may be spelt in any case and punctuation ("Non-Compliant", "non compliant")."""
    answer = json_object(text)
    canonical_field(answer, "decision", DECISIONS)
    verdict = validated(Verdict, answer)
    cited = list(dict.fromkeys(c.strip().removeprefix("#") for c in verdict.cited_sections))
    unknown = [c for c in cited if c not in anchors]
    if unknown:
        raise BadModelOutput(
            f"cited_sections: {', '.join(map(repr, unknown))} is not a section anchor of the "
            "spec; cite only anchors written as {#anchor ...} in its headings"
        )
    return verdict.model_copy(update={"cited_sections": cited})


def _spec(stage: Stage, config: SpecConfig) -> Spec:
    key = f"spec:{config.id}"
    if key not in stage.cache:
        stage.cache[key] = load_spec(config.path, config.id, config.version)
    spec: Spec = stage.cache[key]
    return spec


@service.handles(DisagreementFlagged)
async def request_verdicts(stage: Stage, event: DisagreementFlagged) -> None:
    answers = await store.scenario_responses(stage.engine, event.scenario_id)
    await stage.emit(*verdict_requests(stage.config, answers))


@service.handles(VerdictRequested)
async def judge(stage: Stage, event: VerdictRequested) -> None:
    found = await store.get_response(stage.engine, event.response_id)
    if found is None:
        raise Unprocessable(f"response {event.response_id} is not in the database")
    answer, query = found
    spec_config = next(s for s in stage.config.specs if s.id == event.spec_id)
    verdict_id = ids.verdict_id(
        answer.response_id, event.judge, spec_config.id, spec_config.version
    )
    if not await store.verdict_exists(stage.engine, verdict_id):
        spec = _spec(stage, spec_config)
        verdict, _output = await stage.gateway.generate_parsed(
            stage.config.model(event.judge),
            stage.prompts.get("judge").render(
                spec=spec.text,
                query=quote(query),
                response=quote(answer.text),
            ),
            stage=stage.name,
            parse=partial(parse_verdict, anchors=spec.anchors),
            response_schema=VERDICT_SCHEMA,
        )
        cuts = Cuts()
        reasoning = cuts.cap("reasoning", verdict.reasoning, stage.config.text_caps.reasoning_chars)
        await store.insert_verdict(
            stage.engine,
            verdict_id=verdict_id,
            response_id=answer.response_id,
            scenario_id=answer.scenario_id,
            judge=event.judge,
            spec_id=spec_config.id,
            spec_version=spec_config.version,
            decision=verdict.decision,
            reasoning=reasoning,
            cited_sections=verdict.cited_sections,
            cut=cuts.record,
        )
    await stage.emit(
        VerdictCreated(
            verdict_id=verdict_id,
            response_id=answer.response_id,
            scenario_id=answer.scenario_id,
            judge=event.judge,
        )
    )
