"""Prompt templates: kept as text files beside each stage, overridable from a folder.

A template is `services/<stage>/prompts/<name>.txt` (the user turn) with an optional
`<name>.system.txt`. Placeholders use `$name` so JSON examples in a prompt need no escaping.
With `prompts_dir` set, `<prompts_dir>/<stage>/<name>.txt` replaces the packaged file, so the
paper's own prompt text can be dropped in. A template's version is a hash of its text: editing a
prompt gives new entity ids instead of silently mixing outputs of two prompts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from specstress.errors import InputError
from specstress.llm.messages import ChatMessage


@dataclass(frozen=True)
class Prompt:
    name: str
    user: Template
    system: Template | None
    version: str

    def render(self, **values: str) -> list[ChatMessage]:
        try:
            messages = [ChatMessage(role="user", content=self.user.substitute(values))]
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

    def _read(self, filename: str) -> str | None:
        if self.override_dir is not None and (self.override_dir / filename).is_file():
            return (self.override_dir / filename).read_text(encoding="utf-8")
        packaged = resources.files(f"services.{self.stage}") / "prompts" / filename
        if packaged.is_file():
            return packaged.read_text(encoding="utf-8")
        return None

    def get(self, name: str) -> Prompt:
        if name not in self._loaded:
            user = self._read(f"{name}.txt")
            if user is None:
                raise InputError(f"stage {self.stage}: no prompt template named {name!r}")
            system = self._read(f"{name}.system.txt")
            digest = hashlib.sha256(f"{system or ''}\0{user}".encode()).hexdigest()[:12]
            self._loaded[name] = Prompt(
                name=name,
                user=Template(user),
                system=Template(system) if system is not None else None,
                version=digest,
            )
        return self._loaded[name]
