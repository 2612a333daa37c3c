"""Prompt templates: the cacheable prefix part, and overrides that replace a whole template."""

from __future__ import annotations

import hashlib
from pathlib import Path

from specstress.llm import ChatMessage
from specstress.pipeline.prompts import PROMPT_MARKERS, Prompt, PromptLibrary
from tests.paths import REPO

VALUES = {"spec": "SPEC TEXT", "query": "Q", "response": "R"}


def test_the_judge_sends_the_spec_first_as_its_own_cacheable_message() -> None:
    messages = PromptLibrary("compliance_judge").get("judge").render(**VALUES)
    assert messages[0] == ChatMessage(
        role="user", content="<model_spec>\nSPEC TEXT\n</model_spec>\n", cache=True
    )
    assert len(messages) == 2 and not messages[1].cache
    assert "<user_query>\nQ\n</user_query>" in messages[1].content
    assert "SPEC TEXT" not in messages[1].content


def test_the_shared_prefix_is_byte_identical_across_calls() -> None:
    judge = PromptLibrary("compliance_judge").get("judge")
    first = judge.render(**VALUES)
    second = judge.render(**{**VALUES, "query": "another", "response": "other"})
    assert first[0] == second[0]
    assert first[1] != second[1]


def test_an_override_replaces_the_template_with_its_parts(tmp_path: Path) -> None:
    folder = tmp_path / "compliance_judge"
    folder.mkdir()
    (folder / "judge.txt").write_text("<model_spec>$spec</model_spec> $query $response")
    packaged = PromptLibrary("compliance_judge").get("judge")
    overridden = PromptLibrary("compliance_judge", str(tmp_path)).get("judge")
    # the paper's one-file prompt must not get the packaged spec prefix as well
    assert overridden.render(**VALUES) == [
        ChatMessage(role="user", content="<model_spec>SPEC TEXT</model_spec> Q R")
    ]
    assert overridden.version != packaged.version
    (folder / "judge.prefix.txt").write_text("$spec")
    (folder / "judge.txt").write_text("$query $response")
    split = PromptLibrary("compliance_judge", str(tmp_path)).get("judge").render(**VALUES)
    assert [m.cache for m in split] == [True, False]


def test_templates_without_a_prefix_keep_their_version() -> None:
    # the version of a prefix-less template is what it was before prefixes existed, so the
    # ids derived from it (spectra) do not change
    spectrum = PromptLibrary("spectrum_builder").get("spectrum")
    assert spectrum.prefix is None
    text = (REPO / "services/spectrum_builder/prompts/spectrum.txt").read_text()
    assert spectrum.version == hashlib.sha256(f"\0{text}".encode()).hexdigest()[:12]
    rendered = spectrum.render(value1="a", value2="b", queries="q")
    assert all(not m.cache for m in rendered)


def test_every_packaged_template_carries_its_marker() -> None:
    # the simulator tells prompts apart by these markers; a template that lost one would be
    # answered as a target model's question
    for marker in PROMPT_MARKERS:
        prompt = PromptLibrary(marker.stage).get(marker.template)
        text = "\n".join(m.content for m in prompt.render(**_placeholders(prompt)))
        assert marker.text in text, (marker.stage, marker.template)
    kinds = [marker.kind for marker in PROMPT_MARKERS]
    assert len(set(kinds)) == len(kinds)


def _placeholders(prompt: Prompt) -> dict[str, str]:
    parts = [prompt.user, prompt.system, prompt.prefix]
    names = {
        match.group("named") or match.group("braced")
        for part in parts
        if part is not None
        for match in part.pattern.finditer(part.template)
        if match.group("named") or match.group("braced")
    }
    return dict.fromkeys(names, "x")
