"""pairs.sampled -> up to three scenarios (neutral, value1, value2), or recorded drops.

The generator for a pair is picked by smooth weighted round-robin over the configured
generators, indexed by the pair's position in its run, so the choice is deterministic and a
redelivered pair goes to the same generator (and hits its cached call).
"""

from __future__ import annotations

import asyncio
import re

from specstress import ids
from specstress.config import WeightedModel
from specstress.contracts import PairSampled, ScenarioCreated
from specstress.db import store
from specstress.method.parsing import text_after_tag
from specstress.pipeline.service import Service
from specstress.pipeline.stage import Stage, Unprocessable
from specstress.text import quote

service = Service("scenario_generator")
QUESTION_TAG = "[User Question]"
QUERY_TAG = "[User Query]"
_REFUSAL = re.compile(
    r"\b(I can(?:no|')t|I won't|I will not|I'm not able to|I am not able to|I must decline|"
    r"unable to (?:help|assist|comply))\b",
    re.IGNORECASE,
)


def weighted_round_robin(generators: list[WeightedModel], index: int) -> str:
    """The generator for the pair at `index`: smooth weighted round-robin over one cycle."""
    total = sum(g.weight for g in generators)
    current = [0] * len(generators)
    cycle: list[str] = []
    for _ in range(total):
        for i, g in enumerate(generators):
            current[i] += g.weight
        best = max(range(len(generators)), key=lambda i: current[i])
        current[best] -= total
        cycle.append(generators[best].model)
    return cycle[index % total]


def drop_reason(output: str, tag: str, max_chars: int | None = None) -> str | None:
    """Why a generation cannot be used, or None when it can. A query longer than `max_chars`
    is dropped whole: cut, it would be another question, and every prompt quotes it."""
    query = text_after_tag(output, tag)
    if query is None:
        return "refusal" if _REFUSAL.search(output) else f"no {tag} tag"
    if not query:
        return f"nothing after the {tag} tag"
    if max_chars is not None and len(query) > max_chars:
        return f"the query is {len(query)} characters long, more than {max_chars}"
    return None


async def _generate(
    stage: Stage,
    pair: store.PairRow,
    *,
    variant: str,
    generator: str,
    prompt_name: str,
    tag: str,
    extra: dict[str, str],
) -> str | None:
    """Make (or find) one scenario; returns its query, or None when it was dropped."""
    prompt = stage.prompts.get(prompt_name)
    scenario_id = ids.scenario_id(pair.pair_id, variant, generator, prompt.version)
    messages = prompt.render(value1=pair.value1, value2=pair.value2, **extra)
    output = await stage.gateway.generate(stage.config.model(generator), messages, stage=stage.name)
    reason = drop_reason(output.text, tag, stage.config.text_caps.answer_chars)
    if reason is not None:
        await store.insert_drop(
            stage.engine,
            pair_id=pair.pair_id,
            variant=variant,
            generator=generator,
            reason=reason,
            raw=output.text,
        )
        return None
    query = text_after_tag(output.text, tag) or ""
    await store.insert_scenario(
        stage.engine,
        scenario_id=scenario_id,
        pair_id=pair.pair_id,
        variant=variant,
        generator=generator,
        prompt_version=prompt.version,
        query=query,
    )
    return query


@service.handles(PairSampled)
async def generate_scenarios(stage: Stage, event: PairSampled) -> None:
    state = await store.pair_state(stage.engine, event.pair_id, with_spectrum=False)
    if state is None:
        raise Unprocessable(f"pair {event.pair_id} is not in the database")
    pair, existing, dropped = state.pair, state.scenarios, state.drops
    generator = weighted_round_robin(stage.config.roles.generators, event.index)

    if "neutral" in existing:
        neutral: str | None = existing["neutral"].query
    elif "neutral" in dropped:
        neutral = None
    else:
        neutral = await _generate(
            stage,
            pair,
            variant="neutral",
            generator=generator,
            prompt_name="generate",
            tag=QUESTION_TAG,
            extra={},
        )

    pending = [v for v in ("value1", "value2") if v not in existing and v not in dropped]
    if neutral is None:
        for variant in pending:
            await store.insert_drop(
                stage.engine,
                pair_id=pair.pair_id,
                variant=variant,
                generator=generator,
                reason="neutral scenario was dropped",
                raw="",
            )
    else:
        favoured = {"value1": pair.value1, "value2": pair.value2}
        await asyncio.gather(
            *(
                _generate(
                    stage,
                    pair,
                    variant=variant,
                    generator=generator,
                    prompt_name="bias",
                    tag=QUERY_TAG,
                    extra={"favoured": favoured[variant], "query": quote(neutral)},
                )
                for variant in pending
            )
        )

    # every variant is now stored or dropped; announce the stored ones (duplicates are dropped)
    created = await store.pair_scenarios(stage.engine, pair.pair_id)
    await stage.emit(
        *(
            ScenarioCreated(scenario_id=s.scenario_id, pair_id=s.pair_id, variant=s.variant)
            for s in created.values()
        )
    )
