"""request_hash: the cache key must move with what shapes an answer and only with that."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest

from specstress.config import ModelConfig
from specstress.llm import ChatMessage, request_hash
from specstress.llm.structured import OutputSchema
from tests.support.models import model_config

MESSAGES = [
    ChatMessage(role="system", content="Be brief."),
    ChatMessage(role="user", content="Name a colour."),
]


def _model(**changes: Any) -> ModelConfig:
    return model_config(**{"params": {"temperature": 0.0, "max_tokens": 100}, **changes})


def test_hash_is_a_stable_sha256_hex() -> None:
    digest = request_hash(_model(), MESSAGES)
    assert digest == request_hash(_model(), list(MESSAGES))
    # pinned: a change of the canonical form would silently orphan every cached answer
    canonical = (
        '{"base_url":"https://api.example.test/v1",'
        '"messages":[{"content":"Be brief.","role":"system"},'
        '{"content":"Name a colour.","role":"user"}],'
        '"model_id":"model-1","params":{"max_tokens":100,"temperature":0.0},'
        '"protocol":"openai","response_format":null}'
    )
    assert digest == hashlib.sha256(canonical.encode()).hexdigest()


def test_param_order_does_not_matter() -> None:
    reordered = _model(params={"max_tokens": 100, "temperature": 0.0})
    assert request_hash(reordered, MESSAGES) == request_hash(_model(), MESSAGES)


@pytest.mark.parametrize(
    "changes",
    [
        {"model_id": "model-2"},
        {"base_url": "https://other.example.test/v1"},
        {"params": {"temperature": 0.5, "max_tokens": 100}},
    ],
)
def test_what_shapes_the_answer_changes_the_hash(changes: dict[str, Any]) -> None:
    assert request_hash(_model(**changes), MESSAGES) != request_hash(_model(), MESSAGES)


def test_message_and_format_changes_change_the_hash() -> None:
    base = request_hash(_model(), MESSAGES)
    edited = [MESSAGES[0], ChatMessage(role="user", content="Name a colour!")]
    assert request_hash(_model(), edited) != base
    role_swapped = [MESSAGES[0], ChatMessage(role="assistant", content="Name a colour.")]
    assert request_hash(_model(), role_swapped) != base
    schema = OutputSchema(name="colour", json_schema={"type": "object"})
    assert request_hash(_model(), MESSAGES, schema) != base


def test_reasoning_changes_the_hash_and_cache_marks_do_not() -> None:
    base = request_hash(_model(), MESSAGES)
    assert request_hash(_model(reasoning={"effort": "low"}), MESSAGES) != base
    assert request_hash(_model(reasoning={"effort": "low"}), MESSAGES) != request_hash(
        _model(reasoning={"effort": "high"}), MESSAGES
    )
    marked = [MESSAGES[0].model_copy(update={"cache": True}), MESSAGES[1]]
    assert request_hash(_model(), marked) == base


def test_keys_and_cosmetics_do_not_change_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    base = request_hash(_model(), MESSAGES)
    monkeypatch.setenv("ALPHA_KEY", "sk-first")
    assert request_hash(_model(), MESSAGES) == base
    monkeypatch.setenv("ALPHA_KEY", "sk-rotated")
    assert request_hash(_model(), MESSAGES) == base
    assert request_hash(_model(api_key_env="OTHER_KEY"), MESSAGES) == base
    assert request_hash(_model(api_key_env=None), MESSAGES) == base
    assert request_hash(_model(key="beta", family="other"), MESSAGES) == base
    assert request_hash(_model(base_url="https://api.example.test/v1/"), MESSAGES) == base


SPEC = '<model_spec>\n# Spéc — «quoted» "text", a\\backslash, a\ttab and 🙂\n</model_spec>'


def _whole_text_hash(
    model: ModelConfig, messages: list[ChatMessage], schema: OutputSchema | None
) -> str:
    """The key as the whole canonical text hashed at once: what every stored key was."""
    fields: dict[str, Any] = {
        "protocol": model.protocol,
        "base_url": model.base_url.rstrip("/"),
        "model_id": model.model_id,
        "params": model.params,
        "messages": [m.model_dump(exclude={"cache"}) for m in messages],
        "response_format": None if schema is None else schema.model_dump(),
    }
    if model.reasoning is not None:
        fields["reasoning"] = model.reasoning.model_dump()
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_a_shared_prefix_keeps_the_keys_stored_before() -> None:
    model = _model(reasoning={"effort": "low"})
    schema = OutputSchema(name="verdict", json_schema={"type": "object", "required": ["decision"]})
    judged = [
        ChatMessage(role="system", content="Judge."),
        ChatMessage(role="user", content=SPEC, cache=True),
        ChatMessage(role="user", content="Answer: ok"),
    ]
    alone = [ChatMessage(role="user", content=SPEC, cache=True)]
    # pinned: the keys these calls had before their shared prefix was hashed once
    pinned = {
        "judged": "f4eecbd628c466bac0c228c5a625df39737257007a00499f349d487a233e680b",
        "alone": "1e6d0c2e91996423dc5b7e6c54ce9cd3f57f84751242c9a92395fa4a687e6b08",
    }
    for _ in range(2):  # the second time from the kept prefix
        assert request_hash(model, judged, schema) == pinned["judged"]
        assert request_hash(model, alone, schema) == pinned["alone"]
    # equal text in other objects, as a prompt rendered again makes it
    again = [m.model_copy(update={"content": "".join(m.content)}) for m in judged]
    assert request_hash(model, again, schema) == pinned["judged"]


@pytest.mark.parametrize("seed", range(20))
def test_the_key_is_the_hash_of_the_whole_canonical_text(seed: int) -> None:
    rng = random.Random(seed)
    texts = [SPEC, "", "Name a colour.", 'line\nbreak \u2028 \x00 \\ "', "é" * 300]
    messages = [
        ChatMessage(
            role=rng.choice(["system", "user", "assistant"]),
            content=rng.choice(texts),
            cache=rng.random() < 0.4,
        )
        for _ in range(rng.randrange(5))
    ]
    model = _model(reasoning={"effort": "high"}) if rng.random() < 0.5 else _model()
    schema = OutputSchema(name="s", json_schema={"type": "object"}) if seed % 2 else None
    assert request_hash(model, messages, schema) == _whole_text_hash(model, messages, schema)
