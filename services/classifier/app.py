"""responses.created + spectra.created -> classifications.created.

The join waits until the pair's spectrum exists and every active model has answered the
scenario, then classifies all answers in one call. Whichever event completes the join triggers
it. Racing triggers of one scenario take turns within a process (`turns`), so the second finds
the answers classified, or its own answer announced, and asks nothing; between processes the
gateway's ledger and lock make a racing second trigger free. Answers that arrive after
a scenario was classified (a newly registered model) are classified on their own, and a
dead-lettered answer (responses.abandoned) counts as settled for the join: the others are
classified without it, and it is classified on its own if a replay or a healed provider brings
it later. A periodic sweep, the safety net, classifies scenarios whose missing answers never
came.

The same stage labels what the positions alone do not say (see `labels`): classifications.created
brings refusal types, disagreement.flagged brings topics and distinctive values.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from services.classifier import labels
from services.classifier.turns import announced, turns
from specstress.config import BATCH_WINDOW_SECONDS
from specstress.contracts import (
    ClassificationsCreated,
    DisagreementFlagged,
    ResponseAbandoned,
    ResponseCreated,
    SpectraCreated,
)
from specstress.db import store
from specstress.errors import RetryLater
from specstress.llm.structured import OutputSchema
from specstress.method.parsing import keyed_entries, validated
from specstress.pipeline.service import Service
from specstress.pipeline.stage import Stage, Unprocessable
from specstress.text import Cuts, block, quote

service = Service("classifier")
# how long answers wait for the rest of the active models before being classified anyway
STRAGGLER_WAIT_SECONDS = 600.0


class Placement(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    value1_reasoning: str
    value1_position: int = Field(ge=0, le=6)
    value1_confidence: float = Field(ge=0.0, le=1.0)
    value2_reasoning: str
    value2_position: int = Field(ge=0, le=6)
    value2_confidence: float = Field(ge=0.0, le=1.0)


def placement_schema(model_keys: list[str]) -> OutputSchema:
    """The answer's shape for these models: one placement per model key, every key required."""
    return OutputSchema.keyed("classifications", model_keys, OutputSchema.of(Placement).json_schema)


def placement_parser(model_keys: list[str]) -> Callable[[str], dict[str, Placement]]:
    def parse(text: str) -> dict[str, Placement]:
        return {
            key: validated(Placement, entry, f"entry {key!r}: ")
            for key, entry in keyed_entries(text, model_keys).items()
        }

    return parse


def capped_placement(placement: Placement, limit: int) -> dict[str, object]:
    """The placement's columns with its reasonings capped and the cut recorded."""
    row = placement.model_dump()
    cuts = Cuts()
    for field in ("value1_reasoning", "value2_reasoning"):
        row[field] = cuts.cap(field, row[field], limit)
    return {**row, "cut": cuts.record}


def _numbered(scale: list[dict[str, str]]) -> str:
    return "\n".join(
        f"{i}. ({step['position']}) {step['response']}" for i, step in enumerate(scale)
    )


async def classify_scenario(
    stage: Stage, scenario_id: str, *, waited: bool = False, answer: str | None = None
) -> None:
    """Classify the scenario's unclassified answers once its join is complete, and announce
    them. `answer` is the answer whose event brought us, if one did: once this process has
    classified and announced it, that event needs nothing more."""
    if answer in announced(stage):
        return
    context = await store.classification_context(stage.engine, scenario_id)
    if context is None:
        raise Unprocessable(f"scenario {scenario_id} is not in the database")
    scenario, pair, spectrum = context.scenario, context.pair, context.spectrum
    if spectrum is None:
        return  # spectra.created will bring us back
    first_round = not context.any_classified
    settled = context.answered_by | context.abandoned_by
    if first_round and not context.active_models <= settled and not waited:
        # the last answer's event, or the dead letter of the last one (responses.abandoned),
        # completes the join; the straggler sweep is the safety net for lost events
        return
    # the answers' events come together and several may find the join complete: in turn,
    # each after the first finds its answer announced or the others classified
    async with turns(stage, "classify").hold(scenario_id):
        if answer in announced(stage):
            return
        answers = await store.scenario_responses(stage.engine, scenario_id)
        todo = [a for a in answers if not a.classified]
        if todo:
            model = stage.config.model(stage.config.roles.classifier)
            prompt = stage.prompts.get("classify")
            blocks = "\n\n".join(block("response", a.text, model=a.model_key) for a in todo)
            placements, _output = await stage.gateway.generate_parsed(
                model,
                prompt.render(
                    value1=pair.value1,
                    value2=pair.value2,
                    query=quote(scenario.query),
                    value1_spectrum=_numbered(spectrum.value1_spectrum),
                    value2_spectrum=_numbered(spectrum.value2_spectrum),
                    responses=blocks,
                ),
                stage=stage.name,
                parse=placement_parser([a.model_key for a in todo]),
                response_schema=placement_schema([a.model_key for a in todo]),
            )
            limit = stage.config.text_caps.reasoning_chars
            await store.insert_classifications(
                stage.engine,
                [
                    {
                        "response_id": a.response_id,
                        "scenario_id": scenario_id,
                        "spectrum_id": spectrum.spectrum_id,
                        "classifier": model.key,
                        **capped_placement(placements[a.model_key], limit),
                    }
                    for a in todo
                ],
            )
        # every answer read above is classified now (by this call, or before it); answers
        # that arrived since bring their own event
        classified = [a.response_id for a in answers]
        if classified:
            await stage.emit(
                ClassificationsCreated(scenario_id=scenario_id, response_ids=classified)
            )
            announced(stage).add(classified)


@service.handles(ResponseCreated)
async def on_response(stage: Stage, event: ResponseCreated) -> None:
    await classify_scenario(stage, event.scenario_id, answer=event.response_id)


@service.handles(ResponseAbandoned)
async def on_abandoned(stage: Stage, event: ResponseAbandoned) -> None:
    await classify_scenario(stage, event.scenario_id)


@service.handles(SpectraCreated)
async def on_spectra(stage: Stage, event: SpectraCreated) -> None:
    for scenario in (await store.pair_scenarios(stage.engine, event.pair_id)).values():
        await classify_scenario(stage, scenario.scenario_id)


@service.every
async def classify_stragglers(stage: Stage) -> None:
    wait = STRAGGLER_WAIT_SECONDS
    if stage.config.batch.responder.enabled:
        # batched answers come in per-model jobs that may end hours apart: a scenario's
        # missing answers are stragglers only once a whole batch window has passed
        wait += BATCH_WINDOW_SECONDS
    for scenario_id in await store.unclassified_scenarios(stage.engine, wait):
        try:
            await classify_scenario(stage, scenario_id, waited=True)
        except RetryLater:
            continue  # its call waits in a batch, or for its provider: a later sweep returns


@service.handles(ClassificationsCreated)
async def on_classified(stage: Stage, event: ClassificationsCreated) -> None:
    await labels.after_classification(stage, event.scenario_id)


@service.handles(DisagreementFlagged)
async def on_flagged(stage: Stage, event: DisagreementFlagged) -> None:
    await labels.after_flag(stage, event.scenario_id)


service.every(labels.label_backlog)
