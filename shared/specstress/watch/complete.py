"""When a model's backfill is done.

One definition, in one function, so it can be pointed at the project's shared completeness
model once that exists: every scenario has the model's answer, classified; every answer that
needs a refusal type has one; and where a model set that disagrees highly holds an answer of
a spec-governed family, that answer has its verdicts (the model's and its neighbours', whose
flags the model may have set).
Work the pipeline gave up on (a dead letter) is settled: it will not come, and waiting for it
would hold the report back for ever; the report then counts what exists.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config
from specstress.watch.facts import Facts, expected_verdicts, flagged_models, load_facts

__all__ = ["backfill_complete", "settled"]


async def backfill_complete(
    engine: AsyncEngine, config: Config, model_key: str, facts: Facts | None = None
) -> bool:
    """Whether `model_key`'s backfill is done, from `facts` or freshly loaded ones."""
    return settled(config, facts or await load_facts(engine), model_key)


def settled(config: Config, facts: Facts, model_key: str) -> bool:
    if not facts.scenarios:
        return False
    gave_up = facts.gave_up
    for scenario_id in facts.scenarios:
        by_model = facts.positions.get(scenario_id, {})
        answers = facts.answers.get(scenario_id, {})
        response_id = answers.get(model_key)
        if response_id is None:
            if (scenario_id, model_key) in gave_up.answers:
                continue
            return False
        if model_key not in by_model:
            if response_id in gave_up.classifications:
                continue
            return False
        judged = flagged_models(config, facts, scenario_id)
        needs_label = config.labels.refusal_types == "all" or model_key in judged
        if needs_label and response_id not in facts.refusals and response_id not in gave_up.labels:
            return False
        for key, answer_id in answers.items():
            if key not in judged:
                continue
            missing = expected_verdicts(config, facts.families.get(key, "")) - set(
                facts.verdicts.get(answer_id, {})
            )
            if any((answer_id, judge, spec) not in gave_up.verdicts for judge, spec, _ in missing):
                return False
    return True
