"""When a model's backfill is done.

One definition, in one function, so it can be pointed at the project's shared completeness
model once that exists: every scenario has the model's answer, classified; every answer that
needs a refusal type has one; and on every flagged scenario each answer of a spec-governed
family has its verdicts (the model's and its neighbours', whose flags the model may have set).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config
from specstress.watch.facts import Facts, expected_verdicts, flagged, load_facts


async def backfill_complete(
    engine: AsyncEngine, config: Config, model_key: str, facts: Facts | None = None
) -> bool:
    facts = facts or await load_facts(engine)
    if not facts.scenarios:
        return False
    for scenario_id in facts.scenarios:
        by_model = facts.positions.get(scenario_id, {})
        if model_key not in by_model:
            return False
        is_flagged = flagged(config, facts, scenario_id)
        answers = facts.answers.get(scenario_id, {})
        needs_label = config.labels.refusal_types == "all" or is_flagged
        if needs_label and answers[model_key] not in facts.refusals:
            return False
        if not is_flagged:
            continue
        for key, response_id in answers.items():
            if key not in by_model:
                continue
            wanted = expected_verdicts(config, facts.families.get(key, ""))
            if not wanted <= facts.verdicts.get(response_id, {}).keys():
                return False
    return True
