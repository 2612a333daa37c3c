"""Label contracts: the topic, refusal-type and distinctive-value parsers, the labeller roles,
and the simulator's side of the three prompts (markers, planted truth read back)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.classifier.labels import (
    TOPIC_SCHEMA,
    distinctive_parser,
    distinctive_schema,
    labeller,
    parse_topics,
    refusal_parser,
    refusal_schema,
)
from services.llm_sim.answers import Message, prompt_kind
from services.llm_sim.personas import (
    planted_distinctive_values,
    planted_refusal_type,
    planted_topics,
    scenario_sentinel,
)
from specstress.config import load_config
from specstress.errors import BadModelOutput, InputError
from specstress.method.labels import (
    MAX_DISTINCTIVE_VALUES,
    REFUSAL_TYPES,
    REFUSALS,
    TOPIC_COLUMNS,
    TOPICS,
)
from specstress.pipeline.prompts import PromptLibrary
from tests.paths import DEMO_CONFIG

TARGETS = (
    "aurora-cautious",
    "aurora-balanced",
    "aurora-deferential",
    "borealis-candid",
    "borealis-contrarian",
    "borealis-literal",
)


def _all_topics(**overrides: object) -> dict[str, object]:
    answer: dict[str, object] = dict.fromkeys(TOPICS, False)
    answer.update(overrides)
    return answer


# --- vocabularies ----------------------------------------------------------------------------


def test_vocabularies_are_the_methods() -> None:
    assert len(TOPICS) == 8 and len(set(TOPICS)) == 8
    assert len(set(TOPIC_COLUMNS.values())) == 8
    assert all(column.isidentifier() for column in TOPIC_COLUMNS.values())
    assert len(REFUSAL_TYPES) == 7
    refusals = {
        "Soft Rejection with Alternatives",
        "Firm Rejection with Explanation",
        "Complete Rejection",
    }
    assert refusals == REFUSALS


# --- topics ----------------------------------------------------------------------------------


def test_topics_parse_exact_keys_in_any_layout() -> None:
    answer = _all_topics(**{"politics": True, "ethics & moral reasoning": True})
    fenced = f"```json\n{json.dumps(answer)}\n```"
    parsed = parse_topics(fenced)
    assert list(parsed) == list(TOPICS)
    assert {t for t, present in parsed.items() if present} == {
        "politics",
        "ethics & moral reasoning",
    }


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({t: False for t in TOPICS if t != "politics"}, "missing topic key.*'politics'"),
        (_all_topics(religion=True), "unknown key.*'religion'"),
        (_all_topics(**{"Politics": False}), "'politics' is given twice"),
        (_all_topics(politics="true"), "'politics' must be true or false"),
        (_all_topics(politics=1), "'politics' must be true or false"),
        (_all_topics(politics=None), "'politics' must be true or false"),
        ([False] * 8, "no JSON object"),
    ],
)
def test_topics_reject_anything_but_eight_booleans(answer: object, reason: str) -> None:
    with pytest.raises(BadModelOutput, match=reason):
        parse_topics(json.dumps(answer))


# --- refusal types ---------------------------------------------------------------------------


def test_refusal_types_parse_and_normalise_case() -> None:
    parse = refusal_parser(["model-a", "model-b"])
    answer = {
        "model-a": {
            "reasoning": "declines and explains",
            "refusal_type": "Firm Rejection with Explanation",
        },
        "model-b": {"reasoning": "helps", "refusal_type": " full compliance ", "confidence": 0.9},
    }
    labels = parse(json.dumps(answer))
    assert labels["model-a"].refusal_type == "Firm Rejection with Explanation"
    assert labels["model-b"].refusal_type == "Full Compliance"
    assert labels["model-b"].reasoning == "helps"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"model-a": {"reasoning": "r", "refusal_type": "Full Compliance"}}, "no entry.*model-b"),
        (
            {
                "model-a": {"reasoning": "r", "refusal_type": "Full Compliance"},
                "model-b": {"reasoning": "r", "refusal_type": "Full Compliance"},
                "model-c": {"reasoning": "r", "refusal_type": "Full Compliance"},
            },
            "not in the prompt: model-c",
        ),
        (
            {
                "model-a": {"reasoning": "r", "refusal_type": "Refusal"},
                "model-b": {"reasoning": "r", "refusal_type": "Full Compliance"},
            },
            "'Refusal' is not one of",
        ),
        (
            {
                "model-a": {"reasoning": "r", "refusal_type": 6},
                "model-b": {"reasoning": "r", "refusal_type": "Full Compliance"},
            },
            "entry 'model-a': refusal_type",
        ),
        (
            {
                "model-a": {"refusal_type": "Full Compliance"},
                "model-b": {"reasoning": "r", "refusal_type": "Full Compliance"},
            },
            "entry 'model-a': reasoning",
        ),
        ({"model-a": "Full Compliance", "model-b": "Full Compliance"}, "entry 'model-a'"),
    ],
)
def test_refusal_types_reject_bad_entries(answer: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadModelOutput, match=reason):
        refusal_parser(["model-a", "model-b"])(json.dumps(answer))


# --- distinctive values ----------------------------------------------------------------------


def test_distinctive_values_parse_asked_keys_and_ignore_comparison_answers() -> None:
    parse = distinctive_parser(["late"], ["early", "late"])
    answer = {
        "late": {"distinctive_values": [" candour ", "user autonomy"]},
        "early": {"distinctive_values": ["caution"]},
    }
    assert parse(json.dumps(answer)) == {"late": ["candour", "user autonomy"]}


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([], "name 1 to 5 values, not 0"),
        ([f"value {i}" for i in range(MAX_DISTINCTIVE_VALUES + 1)], "not 6"),
        (["candour", "  "], "a value name is empty"),
        (["Candour", "candour"], "named twice"),
        (["candour", 3], "distinctive_values"),
        ("candour", "distinctive_values"),
    ],
)
def test_distinctive_values_reject_bad_lists(values: object, reason: str) -> None:
    answer = {"a": {"distinctive_values": values}}
    with pytest.raises(BadModelOutput, match=reason):
        distinctive_parser(["a"], ["a"])(json.dumps(answer))


def test_distinctive_values_need_every_asked_key_and_no_stranger() -> None:
    parse = distinctive_parser(["a", "b"], ["a", "b"])
    with pytest.raises(BadModelOutput, match=r"no entry for model key.*b"):
        parse(json.dumps({"a": {"distinctive_values": ["x"]}}))
    with pytest.raises(BadModelOutput, match="not in the prompt: z"):
        parse(
            json.dumps({k: {"distinctive_values": ["x"]} for k in ("a", "b", "z")}),
        )


def test_structured_output_schemas_state_the_same_contracts() -> None:
    topics = TOPIC_SCHEMA.json_schema
    assert topics["required"] == list(TOPICS)
    assert all(topics["properties"][t] == {"type": "boolean"} for t in TOPICS)
    refusals = refusal_schema(["a", "b"]).json_schema
    assert refusals["required"] == ["a", "b"]
    assert refusals["properties"]["a"]["properties"]["refusal_type"]["enum"] == list(REFUSAL_TYPES)
    values = distinctive_schema(["late"]).json_schema
    assert values["required"] == ["late"]
    entry = values["properties"]["late"]["properties"]["distinctive_values"]
    assert (entry["minItems"], entry["maxItems"]) == (1, MAX_DISTINCTIVE_VALUES)
    for schema in (topics, refusals, values):
        assert schema["additionalProperties"] is False


# --- roles -----------------------------------------------------------------------------------


def _config_with(tmp_path: Path, **roles: str) -> Path:
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["roles"].update(roles)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_labellers_default_to_the_classifier(tmp_path: Path) -> None:
    config = load_config(DEMO_CONFIG)
    assert config.labels.refusal_types == "all"
    for role in ("topic", "refusal", "distinctive_values"):
        assert labeller(config, role).key == config.roles.classifier
    config = load_config(_config_with(tmp_path, topic="judge-median", refusal="judge-strict"))
    assert labeller(config, "topic").key == "judge-median"
    assert labeller(config, "refusal").key == "judge-strict"
    assert labeller(config, "distinctive_values").key == config.roles.classifier


def test_unknown_labeller_and_scope_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"roles\.distinctive_values: unknown model 'nobody'"):
        load_config(_config_with(tmp_path, distinctive_values="nobody"))
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["labels"] = {"refusal_types": "some"}
    path = tmp_path / "scope.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"labels\.refusal_types"):
        load_config(path)


# --- the simulator's side --------------------------------------------------------------------


def test_every_packaged_prompt_is_recognised_as_its_own_kind() -> None:
    """The label prompts carry their markers and none of another kind's."""
    expected = {
        ("classifier", "classify"): "classifier",
        ("classifier", "topics"): "topics",
        ("classifier", "refusal_types"): "refusal_types",
        ("classifier", "distinctive_values"): "distinctive_values",
        ("compliance_judge", "judge"): "judge",
        ("spectrum_builder", "spectrum"): "spectrum",
        ("scenario_generator", "generate"): "generation",
        ("scenario_generator", "bias"): "biasing",
    }
    for (stage, name), kind in expected.items():
        prompt = PromptLibrary(stage).get(name)
        parts = (prompt.system, prompt.prefix, prompt.user)
        messages = [Message("user", part.template) for part in parts if part is not None]
        assert prompt_kind(messages) == kind, (stage, name)
    label_prompts = {
        name: PromptLibrary("classifier").get(name).user.template
        for name in ("topics", "refusal_types", "distinctive_values")
    }
    assert all(topic in label_prompts["topics"] for topic in TOPICS)
    assert all(name in label_prompts["refusal_types"] for name in REFUSAL_TYPES)


def test_planted_refusals_follow_persona_reserve() -> None:
    queries = [
        scenario_sentinel(f"a{n}", f"b{n}", lean)
        for n in range(100)
        for lean in ("neutral", "value1", "value2")
    ]

    def refusal_share(model: str) -> float:
        return sum(planted_refusal_type(model, q) in REFUSALS for q in queries) / len(queries)

    assert refusal_share("aurora-cautious") > refusal_share("aurora-balanced")
    assert refusal_share("aurora-balanced") > refusal_share("aurora-deferential")
    kinds = {planted_refusal_type(model, q) for model in TARGETS for q in queries}
    assert kinds == set(REFUSAL_TYPES)
    shares = [
        sum(planted_topics(f"a{n}", f"b{n}")[topic] for n in range(400)) / 400 for topic in TOPICS
    ]
    assert all(0.05 <= share <= 0.4 for share in shares)
    with pytest.raises(ValueError, match="not a target"):
        planted_refusal_type("sim-classifier", queries[0])


async def _chat(client: httpx.AsyncClient, model: str, content: str) -> str:
    reply = await client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}]},
    )
    assert reply.status_code == 200, reply.text
    text = reply.json()["choices"][0]["message"]["content"]
    assert isinstance(text, str)
    return text


def _blocks(answers: dict[str, str], tag: str) -> str:
    return "\n\n".join(f'<{tag} model="{k}">\n{v}\n</{tag}>' for k, v in answers.items())


async def test_simulator_labels_read_back_the_planted_truth(client: httpx.AsyncClient) -> None:
    """The packaged prompts, rendered as the classifier renders them, answered by the
    simulator and read by the classifier's parsers, give the planted labels."""
    prompts = PromptLibrary("classifier")
    for value1, value2 in (("honesty", "privacy"), ("loyalty", "fairness"), ("care", "order")):
        query = f"What should I do? {scenario_sentinel(value1, value2, 'value1')}"
        answers = {model: await _chat(client, model, query) for model in TARGETS}

        topics_prompt = prompts.get("topics").render(query=query)[0].content
        topics = parse_topics(await _chat(client, "sim-classifier", topics_prompt))
        assert topics == planted_topics(value1, value2)

        refusal_prompt = (
            prompts.get("refusal_types")
            .render(query=query, responses=_blocks(answers, "response"))[0]
            .content
        )
        labels = refusal_parser(list(TARGETS))(
            await _chat(client, "sim-classifier", refusal_prompt)
        )
        for model in TARGETS:
            assert labels[model].refusal_type == planted_refusal_type(model, query)
            planted = await client.post(
                "/sim/planted/labels", json={"model": model, "query": query}
            )
            assert planted.json() == {
                "topics": topics,
                "refusal_type": labels[model].refusal_type,
                "distinctive_values": list(planted_distinctive_values(model, query)),
            }

        # the last model joins late: only it is asked, the others are shown for comparison
        late, *early = TARGETS[::-1]
        values_prompt = (
            prompts.get("distinctive_values")
            .render(
                value1=value1,
                value2=value2,
                query=query,
                references=_blocks({k: answers[k] for k in early}, "reference_response"),
                responses=_blocks({late: answers[late]}, "response"),
                model_keys=late,
                max_values=str(MAX_DISTINCTIVE_VALUES),
            )[0]
            .content
        )
        reply = await _chat(client, "sim-classifier", values_prompt)
        assert set(json.loads(reply)) == {late}
        values = distinctive_parser([late], list(TARGETS))(reply)
        assert values == {late: list(planted_distinctive_values(late, query))}
