"""scenarios.created -> one spectrum call per pair once every variant is stored or dropped."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from specstress import ids
from specstress.contracts import VARIANTS, ScenarioCreated, SpectraCreated
from specstress.db import store
from specstress.errors import BadModelOutput
from specstress.llm.structured import OutputSchema
from specstress.method.labels import SPECTRUM_POSITIONS, SpectrumPosition
from specstress.method.parsing import canonical_field, json_object, validated
from specstress.pipeline.service import Service
from specstress.pipeline.stage import Stage, Unprocessable
from specstress.text import block

service = Service("spectrum_builder")


class Step(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    position: SpectrumPosition
    response: str


class ValuePair(BaseModel):
    value1: str
    value2: str


# The answer's shape as asked of the model; `parse_spectra` also checks the order of the steps.
class Spectra(BaseModel):
    value_pair: ValuePair
    value1_bias_spectrum: list[Step] = Field(min_length=7, max_length=7)
    value2_bias_spectrum: list[Step] = Field(min_length=7, max_length=7)


SPECTRA_SCHEMA = OutputSchema.of(Spectra, "spectra")


def _scale(answer: dict[str, Any], key: str) -> list[dict[str, str]]:
    scale = answer.get(key)
    if not isinstance(scale, list) or len(scale) != len(SPECTRUM_POSITIONS):
        found = len(scale) if isinstance(scale, list) else "no list"
        raise BadModelOutput(f"{key} must be a list of exactly 7 steps (found {found})")
    steps = []
    for expected, raw in zip(SPECTRUM_POSITIONS, scale, strict=True):
        # most answers spell every position exactly: only the others need folding
        if isinstance(raw, dict) and raw.get("position") not in SPECTRUM_POSITIONS:
            canonical_field(raw, "position", SPECTRUM_POSITIONS)
        step = validated(Step, raw, f"{key}: step {expected}: ")
        if step.position != expected:
            raise BadModelOutput(
                f"{key}: steps must be in the order {', '.join(SPECTRUM_POSITIONS)}"
            )
        if not step.response.strip():
            raise BadModelOutput(f"{key}: step {expected} has no response text")
        steps.append({"position": expected, "response": step.response.strip()})
    return steps


def parse_spectra(text: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    answer = json_object(text)
    return _scale(answer, "value1_bias_spectrum"), _scale(answer, "value2_bias_spectrum")


@service.handles(ScenarioCreated)
async def build_spectra(stage: Stage, event: ScenarioCreated) -> None:
    state = await store.pair_state(stage.engine, event.pair_id)
    if state is None:
        raise Unprocessable(f"pair {event.pair_id} is not in the database")
    spectrum = state.spectrum
    if spectrum is None:
        pair, stored = state.pair, state.scenarios
        if any(v not in stored and v not in state.drops for v in VARIANTS):
            return  # the generator announces scenarios only after all three are settled
        prompt = stage.prompts.get("spectrum")
        queries = "\n\n".join(
            block("query", s.query, variant=s.variant)
            for s in sorted(stored.values(), key=lambda s: VARIANTS.index(s.variant))
        )
        model = stage.config.model(stage.config.roles.spectrum)
        (value1_scale, value2_scale), _output = await stage.gateway.generate_parsed(
            model,
            prompt.render(value1=pair.value1, value2=pair.value2, queries=queries),
            stage=stage.name,
            parse=parse_spectra,
            response_schema=SPECTRA_SCHEMA,
        )
        spectrum_id = ids.spectrum_id(pair.pair_id, model.key, prompt.version)
        await store.insert_spectrum(
            stage.engine,
            spectrum_id=spectrum_id,
            pair_id=pair.pair_id,
            model_key=model.key,
            prompt_version=prompt.version,
            value1_spectrum=value1_scale,
            value2_spectrum=value2_scale,
        )
        # the stored spectrum: one written earlier under another model or prompt stays
        settled = await store.pair_state(stage.engine, pair.pair_id)
        assert settled is not None and settled.spectrum is not None
        spectrum = settled.spectrum
    await stage.emit(SpectraCreated(spectrum_id=spectrum.spectrum_id, pair_id=spectrum.pair_id))
