"""The schema of the paper's released dataset (Hugging Face `jifanz/stress_testing_model_spec`)
and how its columns map onto this project's facts. README.md beside this file lists every
column, what it becomes, and what the release does not carry.

Column names are matched case-insensitively, with a few spellings seen in loaders of the
release accepted for each (`value_1` for `value1`, `<model>_response` for `response_<model>`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from specstress.dataset.tables import DatasetError
from specstress.method.labels import SPECTRUM_POSITIONS

__all__ = [
    "COMPLETE_CONFIG",
    "DEFAULT_CONFIG",
    "JUDGE_BINS",
    "JUDGE_COLUMN_KEYS",
    "JUDGE_CONFIG",
    "RELEASE",
    "RELEASE_PROMPT_VERSION",
    "RELEASE_TAXONOMY_VERSION",
    "SPECTRUM_POSITIONS",
    "AnswerColumns",
    "JudgeLayout",
    "ScenarioLayout",
    "decision",
    "infer_family",
    "judge_column",
    "judge_layout",
    "layout_of",
    "position",
    "scenario_layout",
    "spectrum",
    "spectrum_pair",
    "variant",
]

RELEASE = "jifanz/stress_testing_model_spec"
DEFAULT_CONFIG = "default"
COMPLETE_CONFIG = "complete"
JUDGE_CONFIG = "judge_evaluations"
# (split name, lower bound, upper bound) of the judge evaluations, by the OpenAI set's D
JUDGE_BINS: tuple[tuple[str, float, float], ...] = (
    ("std_0.0_to_1.0", 0.0, 1.0),
    ("std_1.0_to_1.5", 1.0, 1.5),
    ("std_1.5_to_2.0", 1.5, 2.0),
    ("std_2.0_to_2.5", 2.0, 2.5),
    ("std_2.5_to_3.0", 2.5, 3.0),
)
# Imported rows stand for work done outside this project: their ids hash these in place of a
# taxonomy file's version and a prompt version.
RELEASE_TAXONOMY_VERSION = "release:values-in-the-wild"
RELEASE_PROMPT_VERSION = "release"

# `<judge>_decision` columns of the release -> the judge's model key in the paper's config
JUDGE_COLUMN_KEYS: dict[str, str] = {
    "claude_4": "claude_sonnet_4",
    "gpt41": "gpt_4_1",
    "gemini_2_5": "gemini_2_5_pro",
}

_FAMILY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("claude", "anthropic"),
    ("gpt", "openai"),
    ("chatgpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("gemini", "google"),
    ("gemma", "google"),
    ("grok", "xai"),
    ("llama", "meta"),
    ("mistral", "mistral"),
    ("deepseek", "deepseek"),
    ("qwen", "alibaba"),
)


def infer_family(model_key: str) -> str | None:
    """The maker of a release model key, from its name; None when the name says nothing."""
    lowered = model_key.lower()
    for prefix, family in _FAMILY_PREFIXES:
        if lowered == prefix or re.match(rf"{prefix}(?:[_\-.0-9]|$)", lowered):
            return family
    return None


def _find(columns: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if name in columns:
            return columns[name]
    return None


@dataclass(frozen=True)
class AnswerColumns:
    """One model's columns in a scenario row (any may be missing)."""

    model_key: str
    response: str | None
    value1_position: str | None
    value2_position: str | None
    value1_confidence: str | None
    value2_confidence: str | None
    value1_reasoning: str | None
    value2_reasoning: str | None


@dataclass(frozen=True)
class ScenarioLayout:
    """Where a scenario file (config `default` or `complete`) keeps each field."""

    value1: str
    value2: str
    query: str
    nudge_direction: str
    query_generator: str
    value1_spectrum: str | None
    value2_spectrum: str | None
    # one column holding both, as the spectrum call's JSON contract (method 2.6)
    spectra: str | None
    answers: tuple[AnswerColumns, ...]


@dataclass(frozen=True)
class JudgeLayout:
    """Where a judge-evaluation file keeps each field; `judges` maps column -> judge key."""

    query: str
    model: str
    value1: str
    value2: str
    judges: tuple[tuple[str, str], ...]
    reasonings: Mapping[str, str]


_POSITION = re.compile(
    r"^(?P<model>.+?)_(?P<value>value_?[12]|v[12])_(?P<what>position|confidence|reasoning)$"
)
_RESPONSE_PREFIX = re.compile(r"^response_(?P<model>.+)$")
_RESPONSE_SUFFIX = re.compile(r"^(?P<model>.+)_response$")
_DECISION = re.compile(r"^(?P<judge>.+)_decision$")


def _lowered(names: Sequence[str]) -> dict[str, str]:
    return {name.strip().lower(): name for name in names}


def layout_of(names: Sequence[str]) -> str | None:
    """`scenarios` or `judges` by the columns a file has; None when it is neither."""
    columns = _lowered(names)
    if any(_DECISION.match(c) for c in columns) and _find(columns, "model", "model_key"):
        return "judges"
    if _find(columns, "nudge_direction", "nudge", "variant", "bias_direction") or _find(
        columns, "query_generator", "generator"
    ):
        return "scenarios"
    return None


def _required(columns: Mapping[str, str], where: str, label: str, *names: str) -> str:
    found = _find(columns, *names)
    if found is None:
        raise DatasetError(
            f"{where}: required column {label!r} is missing (accepted names: {', '.join(names)})"
        )
    return found


def scenario_layout(names: Sequence[str], where: str) -> ScenarioLayout:
    columns = _lowered(names)
    models: dict[str, dict[str, str]] = {}
    for lowered, name in columns.items():
        match = _RESPONSE_PREFIX.match(lowered) or _RESPONSE_SUFFIX.match(lowered)
        if match:
            models.setdefault(match["model"], {})["response"] = name
            continue
        match = _POSITION.match(lowered)
        if match:
            which = "value1" if match["value"].endswith("1") else "value2"
            models.setdefault(match["model"], {})[f"{which}_{match['what']}"] = name
    for key, found in models.items():
        if ("value1_position" in found) != ("value2_position" in found):
            have = "value1" if "value1_position" in found else "value2"
            other = "value2" if have == "value1" else "value1"
            raise DatasetError(
                f"{where}: model {key!r} has a {have} position column but no {other} one "
                f"(expected {key}_{other}_position)"
            )
    answers = tuple(
        AnswerColumns(
            model_key=key,
            response=found.get("response"),
            value1_position=found.get("value1_position"),
            value2_position=found.get("value2_position"),
            value1_confidence=found.get("value1_confidence"),
            value2_confidence=found.get("value2_confidence"),
            value1_reasoning=found.get("value1_reasoning"),
            value2_reasoning=found.get("value2_reasoning"),
        )
        for key, found in sorted(models.items())
    )
    return ScenarioLayout(
        value1=_required(columns, where, "value1", "value1", "value_1"),
        value2=_required(columns, where, "value2", "value2", "value_2"),
        query=_required(columns, where, "query", "query", "user_query", "question"),
        nudge_direction=_required(
            columns,
            where,
            "nudge_direction",
            "nudge_direction",
            "nudge",
            "variant",
            "bias_direction",
        ),
        query_generator=_required(
            columns, where, "query_generator", "query_generator", "generator", "generator_model"
        ),
        value1_spectrum=_find(
            columns,
            "value1_spectrum",
            "value1_bias_spectrum",
            "spectrum_value1",
            "value_1_spectrum",
        ),
        value2_spectrum=_find(
            columns,
            "value2_spectrum",
            "value2_bias_spectrum",
            "spectrum_value2",
            "value_2_spectrum",
        ),
        spectra=_find(columns, "spectra", "spectrum", "spectrums", "spectra_json"),
        answers=answers,
    )


def judge_column(column: str, overrides: Mapping[str, str]) -> str:
    """The judge key of a `<judge>_decision` column."""
    stem = column.strip().lower()[: -len("_decision")]
    return overrides.get(stem) or overrides.get(column) or JUDGE_COLUMN_KEYS.get(stem, stem)


def judge_layout(names: Sequence[str], where: str, overrides: Mapping[str, str]) -> JudgeLayout:
    columns = _lowered(names)
    judges = tuple(
        (name, judge_column(name, overrides))
        for lowered, name in sorted(columns.items())
        if _DECISION.match(lowered)
    )
    reasonings = {
        name: columns[f"{name.strip().lower()[: -len('_decision')]}_reasoning"]
        for name, _ in judges
        if f"{name.strip().lower()[: -len('_decision')]}_reasoning" in columns
    }
    return JudgeLayout(
        query=_required(columns, where, "prompt", "prompt", "query", "user_query"),
        model=_required(columns, where, "model", "model", "model_key"),
        value1=_required(columns, where, "value1", "value1", "value_1"),
        value2=_required(columns, where, "value2", "value2", "value_2"),
        judges=judges,
        reasonings=reasonings,
    )


_NEUTRAL = {"neutral", "none", "", "original", "base", "unbiased", "null", "nan"}


def variant(raw: Any) -> str:
    """`neutral`, `value1` or `value2` from a nudge direction (`towards_value1`, `v2`,
    `none`, ...); ValueError when it names neither or both values."""
    if raw is None:
        return "neutral"
    text = re.sub(r"[^a-z0-9]", "", str(raw).lower())
    if text in _NEUTRAL:
        return "neutral"
    ones, twos = "1" in text, "2" in text
    if ones != twos:
        return "value1" if ones else "value2"
    raise ValueError(f"unknown nudge direction {raw!r} (expected neutral, value1 or value2)")


def position(raw: Any) -> int | None:
    """A 0..6 spectrum position; None when absent; ValueError when out of range."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    if isinstance(raw, str) and not raw.strip():
        return None
    if isinstance(raw, bool):
        raise ValueError(f"expected a position 0..6, got {raw!r}")
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        raw = int(raw)
    if not isinstance(raw, int) or not 0 <= raw <= 6:
        raise ValueError(f"expected a position 0..6, got {raw!r}")
    return raw


def decision(raw: Any) -> str | None:
    """`compliant`, `non-compliant` or `ambiguous`; None when the judge gave none."""
    if raw is None:
        return None
    text = re.sub(r"[^a-z]", "", str(raw).lower())
    if text in {"", "none", "nan", "null", "error", "na"}:
        return None
    if text == "compliant":
        return "compliant"
    if text in {"noncompliant", "notcompliant", "violation", "violates"}:
        return "non-compliant"
    if text in {"ambiguous", "unclear", "uncertain"}:
        return "ambiguous"
    raise ValueError(f"unknown decision {raw!r} (expected compliant, non-compliant or ambiguous)")


def spectrum_pair(raw: Any) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Both spectra from one cell holding the spectrum call's JSON object
    (`value1_bias_spectrum`, `value2_bias_spectrum`), as an object or as JSON text."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return [], []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"spectra are not JSON: {exc.msg}") from None
    if not isinstance(raw, Mapping):
        raise ValueError(
            "spectra must be an object with value1_bias_spectrum and value2_bias_spectrum"
        )
    found = []
    for value in ("value1", "value2"):
        key = next((k for k in (f"{value}_bias_spectrum", f"{value}_spectrum") if k in raw), None)
        if key is None:
            raise ValueError(f"spectra lack {value}_bias_spectrum")
        found.append(spectrum(raw[key]))
    return found[0], found[1]


def spectrum(raw: Any) -> list[dict[str, str]]:
    """Seven {"position", "response"} steps in canonical order from the shapes a spectrum
    column may take: a list of such objects, a list of seven texts, a mapping of position to
    text, or any of these as a JSON string. Empty when absent."""
    if raw is None:
        return []
    if isinstance(raw, str):
        if not raw.strip():
            return []
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"spectrum is not JSON: {exc.msg}") from None
    if isinstance(raw, Mapping):
        if "spectrum" in raw:
            return spectrum(raw["spectrum"])
        missing = [p for p in SPECTRUM_POSITIONS if p not in raw]
        if missing:
            raise ValueError(f"spectrum lacks positions {missing}")
        return [{"position": p, "response": str(raw[p])} for p in SPECTRUM_POSITIONS]
    if not isinstance(raw, list) or len(raw) != len(SPECTRUM_POSITIONS):
        raise ValueError(f"spectrum must have {len(SPECTRUM_POSITIONS)} steps")
    steps = []
    for expected, step in zip(SPECTRUM_POSITIONS, raw, strict=True):
        if isinstance(step, Mapping):
            name = step.get("position", expected)
            if name != expected:
                raise ValueError(f"spectrum step {name!r} where {expected!r} belongs")
            steps.append({"position": expected, "response": str(step.get("response", ""))})
        else:
            steps.append({"position": expected, "response": str(step)})
    return steps
