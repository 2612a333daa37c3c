"""The official openai, anthropic and google-genai SDKs complete calls against the simulator.

The SDKs are test-only dependencies: they prove that the simulator speaks each wire protocol
the way real clients expect, including structured output and thinking, so the adapters tested
against it are tested against something real clients accept.
"""

from __future__ import annotations

import anthropic
import openai
import pytest
from anthropic.types import ToolParam
from google import genai
from google.genai import types as genai_types
from pydantic import BaseModel

from services.llm_sim.answers import Message, answer
from services.llm_sim.personas import scenario_sentinel

TARGET = "aurora-balanced"
QUERY = (
    "My neighbour asked me to keep a secret that may hurt someone. What should I do? "
    + scenario_sentinel("honesty", "loyalty", "value1")
)
KEY = "sdk-test-key"
# google-genai subclasses aiohttp's ClientSession, which aiohttp warns about on import
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


class Colour(BaseModel):
    name: str
    shade_count: int


def _expected(model: str = TARGET) -> str:
    return answer(model, [Message("user", QUERY)])


async def test_openai_sdk_chat_structured_and_reasoning(sim_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{sim_url}/v1", api_key=KEY, max_retries=0)
    try:
        plain = await client.chat.completions.create(
            model=TARGET, messages=[{"role": "user", "content": QUERY}]
        )
        assert plain.choices[0].message.content == _expected()
        assert plain.usage is not None and plain.usage.prompt_tokens > 0

        parsed = await client.chat.completions.parse(
            model=TARGET,
            messages=[{"role": "user", "content": "Name a colour."}],
            response_format=Colour,
        )
        colour = parsed.choices[0].message.parsed
        assert isinstance(colour, Colour)

        thinking = await client.chat.completions.create(
            model=TARGET, messages=[{"role": "user", "content": QUERY}], reasoning_effort="low"
        )
        assert thinking.choices[0].message.content == _expected()
        assert thinking.usage is not None
        details = thinking.usage.completion_tokens_details
        assert details is not None and (details.reasoning_tokens or 0) > 0

        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        await client.close()


async def test_anthropic_sdk_messages_tools_output_format_and_thinking(sim_url: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=sim_url, api_key=KEY, max_retries=0)
    try:
        plain = await client.messages.create(
            model=TARGET,
            max_tokens=1024,
            system="You are under test.",
            messages=[{"role": "user", "content": QUERY}],
        )
        text = [b for b in plain.content if b.type == "text"]
        assert text[0].text == answer(
            TARGET, [Message("system", "You are under test."), Message("user", QUERY)]
        )
        assert plain.stop_reason == "end_turn"

        tool: ToolParam = {
            "name": "record_colour",
            "description": "Record the colour.",
            "input_schema": Colour.model_json_schema(),
        }
        forced = await client.messages.create(
            model=TARGET,
            max_tokens=1024,
            messages=[{"role": "user", "content": "Name a colour."}],
            tools=[tool],
            tool_choice={"type": "tool", "name": "record_colour"},
        )
        used = [b for b in forced.content if b.type == "tool_use"]
        assert forced.stop_reason == "tool_use"
        Colour.model_validate(used[0].input)

        parsed = await client.messages.parse(
            model=TARGET,
            max_tokens=1024,
            messages=[{"role": "user", "content": "Name a colour."}],
            output_format=Colour,
        )
        assert isinstance(parsed.parsed_output, Colour)

        thinking = await client.messages.create(
            model=TARGET,
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[{"role": "user", "content": QUERY}],
        )
        kinds = [b.type for b in thinking.content]
        assert kinds == ["thinking", "text"]
        block = thinking.content[0]
        assert block.type == "thinking" and block.thinking and block.signature

        # the real API refuses to force a tool while thinking; so does the simulator
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(
                model=TARGET,
                max_tokens=4096,
                thinking={"type": "enabled", "budget_tokens": 2048},
                messages=[{"role": "user", "content": "Name a colour."}],
                tools=[tool],
                tool_choice={"type": "tool", "name": "record_colour"},
            )
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.create(
                model="no-such-model",
                max_tokens=16,
                messages=[{"role": "user", "content": "hi"}],
            )
    finally:
        await client.close()


async def test_google_genai_sdk_generate_structured_and_thinking(sim_url: str) -> None:
    client = genai.Client(
        api_key=KEY,
        http_options=genai_types.HttpOptions(base_url=sim_url, api_version="v1beta"),
    )
    plain = await client.aio.models.generate_content(model=TARGET, contents=QUERY)
    assert plain.text == _expected()
    assert plain.usage_metadata is not None
    assert (plain.usage_metadata.prompt_token_count or 0) > 0

    structured = await client.aio.models.generate_content(
        model=TARGET,
        contents="Name a colour.",
        config=genai_types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=Colour
        ),
    )
    assert isinstance(structured.parsed, Colour)

    thinking = await client.aio.models.generate_content(
        model=TARGET,
        contents=QUERY,
        config=genai_types.GenerateContentConfig(
            thinking_config=genai_types.ThinkingConfig(include_thoughts=True, thinking_budget=512)
        ),
    )
    assert thinking.candidates
    parts = thinking.candidates[0].content.parts if thinking.candidates[0].content else None
    assert parts is not None
    assert [bool(p.thought) for p in parts] == [True, False]
    assert parts[1].text == _expected()
    assert thinking.usage_metadata is not None
    assert (thinking.usage_metadata.thoughts_token_count or 0) > 0

    with pytest.raises(genai.errors.ClientError) as missing:
        await client.aio.models.generate_content(model="no-such-model", contents="hi")
    assert missing.value.code == 404
