"""Labels on top of the positions: topics (method 2.10), refusal types (2.11) and distinctive
values (2.13).

- Topics: one call per flagged scenario, whichever model set flagged it; one JSON object of
  exactly the eight topic booleans.
- Refusal types: one call per scenario covering its classified answers that have no type yet, so
  an answer that arrives late (a newly registered model) is labelled on its own. Every scenario
  by default; only flagged ones with `labels.refusal_types: flagged`.
- Distinctive values: one call per flagged scenario for the answers without values; answers
  labelled earlier are shown for comparison, so a late model is judged against the others.
  A late answer to a scenario that is flagged when its classification arrives gets them then,
  because the flag events of model sets it does not belong to do not change and so do not
  come again.

A trigger reads what the scenario already has in one lookup (`store.labelling_context`, shared
with concurrent triggers of other scenarios), and the triggers of one scenario take turns within
the process; each step does only what is missing and writes with ON CONFLICT DO NOTHING, so a
redelivered or duplicated trigger costs one lookup, and one racing in another process at most a
ledger lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from services.classifier.turns import turns
from specstress.config import Config, ModelConfig
from specstress.db import labels as label_store
from specstress.db import store
from specstress.db.store import LabellingContext, ResponseRow
from specstress.errors import BadModelOutput, RetryLater
from specstress.llm.errors import BatchPending, LLMError
from specstress.llm.structured import OutputSchema
from specstress.method.labels import MAX_DISTINCTIVE_VALUES, REFUSAL_TYPES, TOPICS
from specstress.method.parsing import canonical, json_object, keyed_entries, validated
from specstress.pipeline.stage import Stage
from specstress.text import Cuts, block, quote

LabelRole = Literal["topic", "refusal", "distinctive_values"]
# how long a label may be missing after its trigger before the periodic sweep takes it on
LABEL_WAIT_SECONDS = 600.0
log = logging.getLogger(__name__)


def labeller(config: Config, role: LabelRole) -> ModelConfig:
    """The model configured for a labelling role; the classifier's model when it is unset."""
    return config.model(getattr(config.roles, role) or config.roles.classifier)


# --- output contracts ------------------------------------------------------------------------


def parse_topics(text: str) -> dict[str, bool]:
    """Exactly the eight topic keys (in any case and punctuation), each a JSON boolean; anything
    else is BadModelOutput."""
    answer: dict[str, object] = {}
    for key, value in json_object(text).items():
        name = canonical(key, TOPICS) or key
        if name in answer:
            raise BadModelOutput(f"topic {name!r} is given twice")
        answer[name] = value
    missing = [topic for topic in TOPICS if topic not in answer]
    if missing:
        raise BadModelOutput(f"missing topic key(s): {', '.join(repr(t) for t in missing)}")
    unknown = sorted(key for key in answer if key not in TOPICS)
    if unknown:
        raise BadModelOutput(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)}; "
            f"the keys are exactly {', '.join(repr(t) for t in TOPICS)}"
        )
    for topic in TOPICS:
        if not isinstance(answer[topic], bool):
            raise BadModelOutput(f"{topic!r} must be true or false, not {answer[topic]!r}")
    return {topic: answer[topic] is True for topic in TOPICS}


class RefusalLabel(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    reasoning: str
    refusal_type: str


class DistinctiveValues(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    distinctive_values: list[str]


def refusal_parser(model_keys: Sequence[str]) -> Callable[[str], dict[str, RefusalLabel]]:
    """Parse one refusal type per model key; type names must name one of the seven (in any
    case and punctuation)."""

    def parse(text: str) -> dict[str, RefusalLabel]:
        labels = {}
        for key, entry in keyed_entries(text, model_keys, model_keys).items():
            label = validated(RefusalLabel, entry, f"entry {key!r}: ")
            named = canonical(label.refusal_type, REFUSAL_TYPES)
            if named is None:
                raise BadModelOutput(
                    f"entry {key!r}: refusal_type {label.refusal_type!r} is not one of "
                    f"{', '.join(repr(t) for t in REFUSAL_TYPES)}"
                )
            labels[key] = RefusalLabel(reasoning=label.reasoning, refusal_type=named)
        return labels

    return parse


def distinctive_parser(
    asked: Sequence[str], shown: Collection[str]
) -> Callable[[str], dict[str, list[str]]]:
    """Parse 1..MAX_DISTINCTIVE_VALUES distinct, non-empty value names per asked model key.

    Entries for answers shown only for comparison are ignored; keys never shown are an error.
    """

    def parse(text: str) -> dict[str, list[str]]:
        result = {}
        for key, entry in keyed_entries(text, asked, shown).items():
            label = validated(DistinctiveValues, entry, f"entry {key!r}: ")
            names = [v.strip() for v in label.distinctive_values]
            if not 1 <= len(names) <= MAX_DISTINCTIVE_VALUES:
                raise BadModelOutput(
                    f"entry {key!r}: name 1 to {MAX_DISTINCTIVE_VALUES} values, not {len(names)}"
                )
            if not all(names):
                raise BadModelOutput(f"entry {key!r}: a value name is empty")
            folded = [n.casefold() for n in names]
            if len(set(folded)) != len(folded):
                raise BadModelOutput(f"entry {key!r}: the same value is named twice")
            result[key] = names
        return result

    return parse


# --- the same contracts as JSON schemas, for providers' native structured output -------------

TOPIC_SCHEMA = OutputSchema(
    name="topics",
    json_schema={
        "type": "object",
        "properties": {topic: {"type": "boolean"} for topic in TOPICS},
        "required": list(TOPICS),
        "additionalProperties": False,
    },
)


def refusal_schema(model_keys: Sequence[str]) -> OutputSchema:
    entry = {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string"},
            "refusal_type": {"type": "string", "enum": list(REFUSAL_TYPES)},
        },
        "required": ["reasoning", "refusal_type"],
        "additionalProperties": False,
    }
    return OutputSchema.keyed("refusal_types", model_keys, entry)


def distinctive_schema(model_keys: Sequence[str]) -> OutputSchema:
    entry = {
        "type": "object",
        "properties": {
            "distinctive_values": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": MAX_DISTINCTIVE_VALUES,
            }
        },
        "required": ["distinctive_values"],
        "additionalProperties": False,
    }
    return OutputSchema.keyed("distinctive_values", model_keys, entry)


# --- labelling steps -------------------------------------------------------------------------


def _blocks(answers: Sequence[ResponseRow], tag: str) -> str:
    return "\n\n".join(block(tag, a.text, model=a.model_key) for a in answers)


def _classified(context: LabellingContext) -> list[ResponseRow]:
    return [a for a in context.answers if a.classified]


async def label_topics(stage: Stage, context: LabellingContext) -> None:
    if context.topics_labelled:
        return
    model = labeller(stage.config, "topic")
    prompt = stage.prompts.get("topics")
    topics, _output = await stage.gateway.generate_parsed(
        model,
        prompt.render(query=quote(context.scenario.query)),
        stage=stage.name,
        parse=parse_topics,
        response_schema=TOPIC_SCHEMA,
    )
    await label_store.insert_topic_labels(
        stage.engine,
        scenario_id=context.scenario.scenario_id,
        labeller=model.key,
        prompt_version=prompt.version,
        topics=topics,
    )


async def label_refusal_types(stage: Stage, context: LabellingContext) -> None:
    if stage.config.labels.refusal_types == "flagged" and not context.flagged:
        return
    todo = [a for a in _classified(context) if a.response_id not in context.refusal_labelled]
    if not todo:
        return
    model = labeller(stage.config, "refusal")
    prompt = stage.prompts.get("refusal_types")
    labels, _output = await stage.gateway.generate_parsed(
        model,
        prompt.render(query=quote(context.scenario.query), responses=_blocks(todo, "response")),
        stage=stage.name,
        parse=refusal_parser([a.model_key for a in todo]),
        response_schema=refusal_schema([a.model_key for a in todo]),
    )
    limit = stage.config.text_caps.reasoning_chars
    await label_store.insert_refusal_types(
        stage.engine,
        [
            {
                "response_id": a.response_id,
                "scenario_id": a.scenario_id,
                "model_key": a.model_key,
                "labeller": model.key,
                "prompt_version": prompt.version,
                "refusal_type": labels[a.model_key].refusal_type,
                **_capped_reasoning(labels[a.model_key].reasoning, limit),
            }
            for a in todo
        ],
    )


def _capped_reasoning(reasoning: str, limit: int) -> dict[str, object]:
    cuts = Cuts()
    return {"reasoning": cuts.cap("reasoning", reasoning, limit), "cut": cuts.record}


async def label_distinctive_values(stage: Stage, context: LabellingContext) -> None:
    answers = _classified(context)
    done = context.distinctive_labelled
    todo = [a for a in answers if a.response_id not in done]
    if not todo:
        return
    earlier = [a for a in answers if a.response_id in done]
    references = ""
    if earlier:
        references = (
            "\nAnswers assessed before, shown for comparison only:\n"
            f"{_blocks(earlier, 'reference_response')}\n"
        )
    model = labeller(stage.config, "distinctive_values")
    prompt = stage.prompts.get("distinctive_values")
    asked = [a.model_key for a in todo]
    values, _output = await stage.gateway.generate_parsed(
        model,
        prompt.render(
            value1=context.pair.value1,
            value2=context.pair.value2,
            query=quote(context.scenario.query),
            references=references,
            responses=_blocks(todo, "response"),
            model_keys=", ".join(asked),
            max_values=str(MAX_DISTINCTIVE_VALUES),
        ),
        stage=stage.name,
        parse=distinctive_parser(asked, [a.model_key for a in answers]),
        response_schema=distinctive_schema(asked),
    )
    await label_store.insert_distinctive_values(
        stage.engine,
        [
            {
                "response_id": a.response_id,
                "rank": rank,
                "scenario_id": a.scenario_id,
                "model_key": a.model_key,
                "value": value,
                "labeller": model.key,
                "prompt_version": prompt.version,
            }
            for a in todo
            for rank, value in enumerate(values[a.model_key], start=1)
        ],
    )


Step = Callable[[Stage, LabellingContext], Awaitable[None]]


async def _label(stage: Stage, scenario_id: str, steps: Sequence[Step]) -> None:
    """Run the steps on what the scenario has, one trigger of a scenario at a time in this
    process (`turns`): a flag racing the classifications' event, or a second model set's flag,
    then finds the labels the first stored instead of asking for them again."""
    async with turns(stage, "label").hold(scenario_id):
        context = await store.labelling_context(stage.engine, scenario_id)
        if context is None:
            raise LookupError(f"scenario {scenario_id} is not in the database")
        for step in steps:
            # each step reads and writes labels of its own kind only
            await step(stage, context)


async def _distinctive_values_if_flagged(stage: Stage, context: LabellingContext) -> None:
    if context.flagged:
        await label_distinctive_values(stage, context)


async def after_classification(stage: Stage, scenario_id: str) -> None:
    """Refusal types for newly classified answers; distinctive values too when they join a
    scenario that is already flagged (a late model), since no new flag may come for it."""
    await _label(stage, scenario_id, (label_refusal_types, _distinctive_values_if_flagged))


async def after_flag(stage: Stage, scenario_id: str) -> None:
    """Everything a flagged scenario gets; one flag per model set may arrive, and each step
    does only what is still missing."""
    await _label(stage, scenario_id, (label_topics, label_distinctive_values, label_refusal_types))


async def label_backlog(stage: Stage) -> None:
    """Label what a lost or dead-lettered trigger left unlabelled; one failure skips one item."""
    backlog = await label_store.label_backlog(
        stage.engine, LABEL_WAIT_SECONDS, stage.config.labels.refusal_types
    )
    steps = (
        (label_topics, backlog.topics),
        (label_distinctive_values, backlog.distinctive_values),
        (label_refusal_types, backlog.refusal_types),
    )
    for step, scenario_ids in steps:
        for scenario_id in scenario_ids:
            try:
                await _label(stage, scenario_id, (step,))
            except BatchPending:
                continue  # queued for a batch job: the answer comes later, go on with the rest
            except RetryLater as exc:
                # a paused provider or a spent budget holds for the rest of the pass too
                log.info("label sweep paused: %s", exc)
                return
            except LLMError as exc:
                log.warning("%s on scenario %s failed: %s", step.__name__, scenario_id, exc)
