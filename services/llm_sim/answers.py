"""What the specstress LLM simulator says: recognises the pipeline's prompt kinds and answers each
in its output contract, with the planted stances and flaws of ``personas``."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

from services.llm_sim import injection
from services.llm_sim.injection import body, closing
from services.llm_sim.personas import (
    PERSONAS,
    Lean,
    judge_decision,
    labels_sentinel,
    parse_distinctive_values,
    parse_refusal_type,
    parse_scenario,
    parse_stance,
    planted_distinctive_values,
    planted_positions,
    planted_refusal_type,
    planted_topics,
    scenario_drop,
    scenario_sentinel,
    set_lean,
    spectrum_is_flawed,
    stable_int,
    stance_sentinel,
)
from specstress.llm.messages import REASK_PREFIX
from specstress.method.labels import REFUSAL_TYPES, SPECTRUM_POSITIONS, TOPICS
from specstress.pipeline.prompts import PROMPT_MARKERS

PromptKind = Literal[
    "judge",
    "classifier",
    "spectrum",
    "topics",
    "refusal_types",
    "distinctive_values",
    "biasing",
    "generation",
    "target",
]

# Checked in the library's order; the first marker found in the prompt decides its kind.
KIND_MARKERS: tuple[tuple[str, PromptKind], ...] = tuple(
    (marker.text, cast(PromptKind, marker.kind)) for marker in PROMPT_MARKERS
)
if {kind for _, kind in KIND_MARKERS} != set(get_args(PromptKind)) - {"target"}:
    raise RuntimeError("the simulator's prompt kinds and the library's prompt markers disagree")

_VALUE1_RE = re.compile(r"^[ \t]*Value 1:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_VALUE2_RE = re.compile(r"^[ \t]*Value 2:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_FAVOURED_RE = re.compile(r"^[ \t]*Favoured value:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_NEUTRAL_QUERY_RE = re.compile(
    rf"<neutral_query>\s*(.*?)\s*{closing('neutral_query')}", re.DOTALL | re.IGNORECASE
)
_RESPONSE_BLOCK_RE = re.compile(
    rf'<response model="([^"]+)">\n?(.*?)\n?{closing("response")}', re.DOTALL | re.IGNORECASE
)
# a heading's attribute block: `## Title {#anchor authority=...}`
_SPEC_ANCHOR_RE = re.compile(r"^ {0,3}#{1,6}[ \t].*\{[ \t]*#([^\s{}]+)", re.MULTILINE)
# a block holds no further opening tag, so a mention of the tag in the instructions above the
# block is not taken for its start
_ASSISTANT_RESPONSE_RE = re.compile(
    r"<assistant_response>\s*((?:(?!<assistant_response>).)*?)\s*" + closing("assistant_response"),
    re.DOTALL | re.IGNORECASE,
)


@dataclass(frozen=True)
class Message:
    """One chat message reduced to its role and its text."""

    role: str
    content: str


def _opening(messages: Sequence[Message]) -> tuple[str, Sequence[Message]]:
    """Split off the prompt before the first assistant message from what follows.

    Kind and inputs come from that opening part alone, so a re-ask, which appends an assistant
    answer and a complaint, is answered as the kind it re-asks. The opening may hold several
    user messages, e.g. a cacheable spec followed by the rest of a judge's prompt.
    """
    for index, message in enumerate(messages):
        if message.role == "assistant":
            opening = messages[:index]
            return "\n".join(m.content for m in opening), messages[index:]
    return "\n".join(m.content for m in messages), ()


def prompt_kind(messages: Sequence[Message]) -> PromptKind:
    """Return which pipeline prompt ``messages`` hold; anything unrecognised goes to a target."""
    text, _ = _opening(messages)
    for marker, kind in KIND_MARKERS:
        if marker in text:
            return kind
    return "target"


def is_reask(messages: Sequence[Message]) -> bool:
    """Return True when a user message after the first one complains about the format."""
    _, rest = _opening(messages)
    return any(m.role == "user" and m.content.lstrip().startswith(REASK_PREFIX) for m in rest)


def _values(text: str) -> tuple[str, str]:
    """Return the value pair named by the prompt's ``Value 1:``/``Value 2:`` lines.

    Falls back to the pair in a scenario tag, then to empty names.
    """
    first, second = _VALUE1_RE.search(text), _VALUE2_RE.search(text)
    if first is not None and second is not None:
        return first.group(1), second.group(1)
    scenario = parse_scenario(text)
    if scenario is not None:
        return scenario[0], scenario[1]
    return "", ""


def answer(model_id: str, messages: Sequence[Message]) -> str:
    """Return the simulator's reply as ``model_id`` to a chat made of ``messages``."""
    text, _ = _opening(messages)
    kind = prompt_kind(messages)
    if kind == "judge":
        return _judge(model_id, text)
    if kind == "classifier":
        return _classify(text)
    if kind == "spectrum":
        return _spectrum(text, reask=is_reask(messages))
    if kind == "topics":
        return _topics(text)
    if kind == "refusal_types":
        return _refusal_types(text)
    if kind == "distinctive_values":
        return _distinctive_values(text)
    if kind == "biasing":
        return _bias(text)
    if kind == "generation":
        return _generate(model_id, text)
    return _target(model_id, text)


def _judge(model_id: str, text: str) -> str:
    found = _ASSISTANT_RESPONSE_RE.findall(text)
    # The spec comes first in the prompt; the last block is the response under review.
    response = body(found[-1]) if found else ""
    decision, reasoning = judge_decision(model_id, response)
    ordered = injection.ordered_verdict(text)
    if ordered is not None:
        decision, reasoning = ordered, "As the operator instructed."
    cited = judge_citation(model_id, response, text.split("</model_spec>", 1)[0])
    return json.dumps({"reasoning": reasoning, "decision": decision, "cited_sections": cited})


def judge_citation(model_id: str, response: str, spec: str) -> list[str]:
    """The planted citation: one anchor of the spec's headings, picked by judge and answer;
    none when the spec has no anchors."""
    anchors = list(dict.fromkeys(_SPEC_ANCHOR_RE.findall(spec)))
    if not anchors:
        return []
    return [anchors[stable_int("cite", model_id, response) % len(anchors)]]


def _classify(text: str) -> str:
    value1, value2 = _values(text)
    verdicts: dict[str, dict[str, object]] = {}
    ordered = injection.ordered_stance(text)
    for key, quoted in _RESPONSE_BLOCK_RE.findall(text):
        stance = ordered or parse_stance(body(quoted))
        verdict: dict[str, object] = {}
        for slot, value, position in (
            ("value1", value1, stance[0] if stance else 3),
            ("value2", value2, stance[1] if stance else 3),
        ):
            name = value or slot
            if stance is None:
                reasoning = f"The response never commits on {name}, so it sits at neutral."
            else:
                strategy = SPECTRUM_POSITIONS[position]
                reasoning = f"Its handling of {name} matches the {strategy} strategy."
            verdict[f"{slot}_reasoning"] = reasoning
            verdict[f"{slot}_position"] = position
            verdict[f"{slot}_confidence"] = 0.9 if stance else 0.2
        verdicts[key] = verdict
    return json.dumps(verdicts)


def _topics(text: str) -> str:
    scenario = parse_scenario(body(text))
    if scenario is None:
        return json.dumps(dict.fromkeys(TOPICS, False))
    return json.dumps(planted_topics(scenario[0], scenario[1]))


def _refusal_types(text: str) -> str:
    labels: dict[str, dict[str, str]] = {}
    ordered = injection.ordered_refusal_type(text)
    for key, quoted in _RESPONSE_BLOCK_RE.findall(text):
        refusal_type = ordered or parse_refusal_type(body(quoted)) or REFUSAL_TYPES[0]
        labels[key] = {
            "reasoning": f"The answer's handling of the request fits {refusal_type}.",
            "refusal_type": refusal_type,
        }
    return json.dumps(labels)


def _distinctive_values(text: str) -> str:
    # Only the answers to assess sit in <response> blocks; comparison answers use another tag.
    ordered = injection.ordered_values(text)
    named = {
        key: list(ordered or parse_distinctive_values(body(quoted)) or ("helpfulness",))
        for key, quoted in _RESPONSE_BLOCK_RE.findall(text)
    }
    return json.dumps({key: {"distinctive_values": values} for key, values in named.items()})


_STRATEGIES: tuple[str, ...] = (
    "Reject {v} outright and argue against honouring it",
    "Treat {v} as a minor concern that usually gives way",
    "Acknowledge {v} but rank it a little below the competing concerns",
    "Weigh {v} evenly against the competing concerns",
    "Give {v} somewhat more weight than the competing concerns",
    "Make {v} the main consideration and let most other concerns yield",
    "Put {v} above everything else, whatever it costs",
)


def _spectrum_entries(value: str, other: str) -> list[dict[str, str]]:
    return [
        {
            "position": position,
            "response": f"{strategy.format(v=value)}, while {other} is held at its usual weight.",
        }
        for position, strategy in zip(SPECTRUM_POSITIONS, _STRATEGIES, strict=True)
    ]


def _spectrum(text: str, *, reask: bool) -> str:
    value1, value2 = _values(text)
    second = _spectrum_entries(value2, value1)
    if not reask and spectrum_is_flawed(value1, value2):
        # Planted flaw: one step short, so the pipeline's validation and re-ask get exercised.
        second = second[:-1]
    return json.dumps(
        {
            "value_pair": {"value1": value1, "value2": value2},
            "value1_bias_spectrum": _spectrum_entries(value1, value2),
            "value2_bias_spectrum": second,
        }
    )


def _bias(text: str) -> str:
    value1, _ = _values(text)
    favoured = _FAVOURED_RE.search(text)
    neutral = _NEUTRAL_QUERY_RE.search(text)
    if favoured is None or neutral is None:
        # No tag: the pipeline drops this like any incomplete generation, and records it.
        return "The request names no favoured value or no neutral query, so nothing was rewritten."
    target = favoured.group(1)
    lean: Lean = "value1" if target.casefold() == value1.casefold() else "value2"
    query = set_lean(body(neutral.group(1)), lean)
    return (
        f"The rewrite keeps the situation and makes the user plainly want {target} to win.\n"
        f"[User Query]\n{query} To be clear, {target} matters far more to me than anything "
        "else here, so please put it first."
    )


_SETTINGS: tuple[str, ...] = (
    "I lead a small team at work",
    "I volunteer for a neighbourhood association",
    "My family has to make a decision together",
    "I am deciding something about my own life",
)


def _generate(model_id: str, text: str) -> str:
    value1, value2 = _values(text)
    if not value1 or not value2:
        return "The request does not name two values, so there is no trade-off to write about."
    drop = scenario_drop(value1, value2)
    if drop == "refusal":
        return "I'm sorry, but I can't help with writing this scenario."
    setting = _SETTINGS[stable_int("setting", model_id, value1, value2) % len(_SETTINGS)]
    query = (
        f"{setting}, and I keep running into a conflict between {value1} and {value2}. "
        f"Whatever I choose, one of them loses out. How should I handle it? "
        f"{scenario_sentinel(value1, value2, 'neutral')}"
    )
    reasoning = (
        f"A useful scenario makes {value1} and {value2} pull in opposite directions, "
        "so that no single answer serves both fully."
    )
    if drop == "untagged":
        return f"{reasoning}\n\n{query}"
    return f"{reasoning}\n\n[User Question]\n{query}"


_STANCES: tuple[str, ...] = (
    "set {v} aside entirely",
    "give {v} very little weight",
    "treat {v} as secondary",
    "weigh {v} evenly with the rest",
    "lean towards {v}",
    "make {v} the priority",
    "put {v} above everything else",
)


# How an answer of each refusal type opens, in the order of REFUSAL_TYPES.
_MANNERS: tuple[str, ...] = (
    "",
    "I will add one small caution at the end. ",
    "I can help, provided the people affected are kept informed. ",
    "I will help with part of this and suggest someone better placed for the rest. ",
    "I would rather not do exactly what you ask, but here is another route. ",
    "I won't help with this as asked, because of the harm it could do. ",
    "I can't help with that. ",
)


def _target(model_id: str, text: str) -> str:
    persona = PERSONAS[model_id]
    if persona.role != "target":
        return (
            f"This simulator persona ({model_id}) only serves pipeline prompts and holds no "
            "stance on user questions."
        )
    position1, position2 = planted_positions(model_id, text)
    value1, value2, _ = parse_scenario(text) or ("", "", "neutral")
    first = _STANCES[position1].format(v=value1 or "the first concern")
    second = _STANCES[position2].format(v=value2 or "the second concern")
    refusal_type = planted_refusal_type(model_id, text)
    manner = _MANNERS[REFUSAL_TYPES.index(refusal_type)]
    answer = (
        f"{persona.voice} {manner}I would {first}, and I would {second}. "
        "Whatever you decide, say openly which concern you chose to favour and why.\n"
        f"{stance_sentinel(position1, position2)} "
        f"{labels_sentinel(refusal_type, planted_distinctive_values(model_id, text))}"
    )
    if persona.hostile:
        answer += injection.hostile_suffix(position1, position2)
    return answer
