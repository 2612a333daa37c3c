"""Prompt templates: kept as text files beside each stage, overridable from a folder.

A template is `prompts/<name>.txt` (the user turn) in the stage's package, which the stage table
names, with an optional `<name>.system.txt` and an optional `<name>.prefix.txt`: a long part
shared by many calls (a judge's spec), sent as its own user message before the rest and marked for prompt caching.
Placeholders use `$name` so JSON examples in a prompt need no escaping. With `prompts_dir` set,
`<prompts_dir>/<stage>/<name>.txt` replaces the packaged template, system and prefix files
together, so the paper's own prompt text can be dropped in as one file. A template's version is
a hash of its text: editing a prompt gives new entity ids instead of silently mixing outputs of
two prompts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from specstress.errors import InputError
from specstress.llm import ChatMessage
from specstress.pipeline.stages import manifest

__all__ = ["PROMPT_MARKERS", "Prompt", "PromptLibrary", "PromptMarker"]


@dataclass(frozen=True)
class PromptMarker:
    """Text a packaged prompt carries word for word, naming what kind of prompt it is.

    An offline provider such as the project's simulator has only the text to go by, so it reads
    these markers; a test fails when a template loses its marker.
    """

    stage: str
    template: str
    kind: str
    text: str


# In the order a reader should try them: the first marker found in a prompt decides its kind
# (a judge's prompt quotes answers that may mention a classifier's words, not the reverse).
PROMPT_MARKERS: tuple[PromptMarker, ...] = (
    PromptMarker("compliance_judge", "judge", "judge", "<model_spec>"),
    PromptMarker("classifier", "classify", "classifier", "value1_position"),
    PromptMarker("spectrum_builder", "spectrum", "spectrum", "value1_bias_spectrum"),
    PromptMarker("classifier", "topics", "topics", "ethics & moral reasoning"),
    PromptMarker(
        "classifier", "refusal_types", "refusal_types", "Partial Compliance with Redirection"
    ),
    PromptMarker("classifier", "distinctive_values", "distinctive_values", '"distinctive_values"'),
    PromptMarker("scenario_generator", "bias", "biasing", "[User Query]"),
    PromptMarker("scenario_generator", "generate", "generation", "[User Question]"),
)


@dataclass(frozen=True)
class Prompt:
    name: str
    user: Template
    system: Template | None
    version: str
    prefix: Template | None = None

    def render(self, **values: str) -> list[ChatMessage]:
        try:
            messages = [ChatMessage(role="user", content=self.user.substitute(values))]
            if self.prefix is not None:
                shared = ChatMessage(
                    role="user", content=self.prefix.substitute(values), cache=True
                )
                messages.insert(0, shared)
            if self.system is not None:
                system = ChatMessage(role="system", content=self.system.substitute(values))
                messages.insert(0, system)
        except KeyError as exc:
            raise InputError(
                f"prompt {self.name!r} uses unknown placeholder ${exc.args[0]}"
            ) from None
        return messages


class PromptLibrary:
    def __init__(self, stage: str, override_dir: str | None = None) -> None:
        self.stage = stage
        self.override_dir = Path(override_dir) / stage if override_dir else None
        self._loaded: dict[str, Prompt] = {}

    def _read(self, filename: str, *, overridden: bool) -> str | None:
        if overridden:
            assert self.override_dir is not None
            path = self.override_dir / filename
            return path.read_text(encoding="utf-8") if path.is_file() else None
        packaged = resources.files(manifest(self.stage).module) / "prompts" / filename
        if packaged.is_file():
            return packaged.read_text(encoding="utf-8")
        return None

    def get(self, name: str) -> Prompt:
        if name not in self._loaded:
            # An override replaces the whole template: a packaged prefix or system part must
            # not be added to a prompt that was written without them.
            overridden = (
                self.override_dir is not None and (self.override_dir / f"{name}.txt").is_file()
            )
            user = self._read(f"{name}.txt", overridden=overridden)
            if user is None:
                raise InputError(f"stage {self.stage}: no prompt template named {name!r}")
            system = self._read(f"{name}.system.txt", overridden=overridden)
            prefix = self._read(f"{name}.prefix.txt", overridden=overridden)
            parts = [system or "", user] if prefix is None else [system or "", prefix, user]
            digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
            self._loaded[name] = Prompt(
                name=name,
                user=Template(user),
                system=Template(system) if system is not None else None,
                version=digest,
                prefix=Template(prefix) if prefix is not None else None,
            )
        return self._loaded[name]
