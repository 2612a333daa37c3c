"""The one configuration file: YAML, validated by pydantic, unknown keys rejected.

Strings may hold `${VAR}` or `${VAR:-default}`; they are expanded from the environment before
validation so one file serves a laptop, CI and a server. API keys are never written in the file:
a model names the environment variable that holds its key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from specstress.errors import InputError

# Keys become NATS subject tokens, metric labels and JSON keys: keep them to a safe alphabet.
Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]
MAX_CONFIG_BYTES = 1_000_000
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(Strict):
    connect_seconds: float = Field(10.0, gt=0)
    read_seconds: float = Field(300.0, gt=0)


class RetryPolicy(Strict):
    max_attempts: int = Field(6, ge=1, le=50)
    base_seconds: float = Field(0.5, gt=0)
    cap_seconds: float = Field(60.0, gt=0)


class Prices(Strict):
    """US dollars per million tokens."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)
    cached_input_per_mtok: float = Field(0.0, ge=0)


class ModelConfig(Strict):
    """One model endpoint. `family` groups models for model sets and specs."""

    key: Key
    family: Key
    protocol: Literal["openai"] = "openai"
    base_url: str
    model_id: str
    api_key_env: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    max_concurrency: int = Field(16, ge=1, le=4096)
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    prices: Prices = Prices()
    simulated: bool = False

    def api_key(self) -> SecretStr | None:
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if value is None:
            raise InputError(
                f"model {self.key!r}: environment variable {self.api_key_env} is not set"
            )
        return SecretStr(value)


class WeightedModel(Strict):
    model: Key
    weight: int = Field(1, ge=1, le=1000)


class Roles(Strict):
    generators: list[WeightedModel] = Field(min_length=1)
    targets: list[Key] = Field(min_length=2)
    spectrum: Key
    classifier: Key
    judges: list[Key] = Field(min_length=1)


class SpecConfig(Strict):
    """A model spec and the model families it governs. `path` may be `builtin:example`."""

    id: Key
    version: str = Field(min_length=1, max_length=64)
    path: str
    families: list[Key] = Field(min_length=1)


class TaxonomyConfig(Strict):
    """`builtin` or a folder/file in the Values-in-the-Wild `values_tree.csv` format."""

    source: str = "builtin"


class Sampling(Strict):
    seed: int = 0
    pairs: int = Field(20, ge=1)


class Disagreement(Strict):
    threshold: float = Field(1.5, gt=0)


class ServicePorts(Strict):
    """Prometheus metrics port of each service (0 = any free port)."""

    scenario_generator: int = Field(9101, ge=0, le=65535)
    responder: int = Field(9102, ge=0, le=65535)
    spectrum_builder: int = Field(9103, ge=0, le=65535)
    classifier: int = Field(9104, ge=0, le=65535)
    aggregator: int = Field(9105, ge=0, le=65535)
    compliance_judge: int = Field(9106, ge=0, le=65535)


class BusConfig(Strict):
    stream: str = Field("SPECSTRESS", pattern=r"^[A-Z][A-Z0-9_]{0,31}$")
    max_deliver: int = Field(5, ge=1, le=100)
    # handlers send in-progress heartbeats, so this bounds redelivery after a crash only
    ack_wait_seconds: float = Field(30.0, ge=3)
    max_ack_pending: int = Field(256, ge=1)
    fetch_batch: int = Field(32, ge=1, le=1000)
    duplicate_window_seconds: float = Field(600.0, ge=1)


class Config(Strict):
    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/specstress"
    taxonomy: TaxonomyConfig = TaxonomyConfig()
    sampling: Sampling = Sampling()
    models: list[ModelConfig] = Field(min_length=1)
    roles: Roles
    # members: model keys, "family:<name>" or "*" (every active target model)
    model_sets: dict[Key, list[str]] = Field(min_length=1)
    specs: list[SpecConfig] = Field(default_factory=list)
    disagreement: Disagreement = Disagreement()
    bus: BusConfig = BusConfig()
    metrics_ports: ServicePorts = ServicePorts()
    prompts_dir: str | None = None

    @model_validator(mode="after")
    def _references_resolve(self) -> Config:
        keys = [m.key for m in self.models]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"models: duplicate key(s) {duplicates}")
        known = set(keys)
        families = {m.family for m in self.models}
        role_refs = [
            *(("roles.generators", g.model) for g in self.roles.generators),
            *(("roles.targets", t) for t in self.roles.targets),
            ("roles.spectrum", self.roles.spectrum),
            ("roles.classifier", self.roles.classifier),
            *(("roles.judges", j) for j in self.roles.judges),
        ]
        for where, ref in role_refs:
            if ref not in known:
                raise ValueError(f"{where}: unknown model {ref!r}")
        for name, members in self.model_sets.items():
            if not members:
                raise ValueError(f"model_sets.{name}: no members")
            for member in members:
                if member == "*":
                    continue
                if member.startswith("family:"):
                    if member[len("family:") :] not in families:
                        raise ValueError(f"model_sets.{name}: unknown family in {member!r}")
                elif member not in known:
                    raise ValueError(f"model_sets.{name}: unknown model {member!r}")
        for spec in self.specs:
            for family in spec.families:
                if family not in families:
                    raise ValueError(f"specs.{spec.id}: unknown family {family!r}")
        return self

    def model(self, key: str) -> ModelConfig:
        for m in self.models:
            if m.key == key:
                return m
        raise KeyError(key)

    def model_set_members(self, name: str, available: list[tuple[str, str]]) -> list[str]:
        """Keys of `available` (model key, family) pairs that belong to the named set."""
        wanted = self.model_sets[name]
        return [
            key
            for key, family in available
            if "*" in wanted or key in wanted or f"family:{family}" in wanted
        ]

    def spec_for_family(self, family: str) -> SpecConfig | None:
        for spec in self.specs:
            if family in spec.families:
                return spec
        return None


def _expand_env(node: Any) -> Any:
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    raise InputError(f"environment variable {name} is referenced but not set")
                return default
            return value

        return _ENV_REF.sub(replace, node)
    if isinstance(node, list):
        return [_expand_env(item) for item in node]
    if isinstance(node, dict):
        return {key: _expand_env(value) for key, value in node.items()}
    return node


def _first_error(path: Path, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key {where!r}"
    return f"{path}: {where}: {first['msg']}"


def load_config(path: str | Path) -> Config:
    """Read, expand and validate a config file; any problem raises one InputError naming it."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read config ({exc.strerror})") from None
    if len(raw_bytes) > MAX_CONFIG_BYTES:
        raise InputError(f"{path}: config larger than {MAX_CONFIG_BYTES} bytes")
    try:
        raw = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    if "NATS_URL" in os.environ:
        raw["nats_url"] = os.environ["NATS_URL"]
    if "DATABASE_URL" in os.environ:
        raw["database_url"] = os.environ["DATABASE_URL"]
    try:
        return Config.model_validate(_expand_env(raw))
    except ValidationError as exc:
        raise InputError(_first_error(path, exc)) from None
