"""The conditions the simulator plays a provider under: rate limits, latency and faults.

Set for every model at the top level and replaced, section by section, for named models:

```yaml
seed: 7
limits: {requests_per_minute: 300, tokens_per_minute: 200000, burst_seconds: 2}
latency: {median_ms: 2000, p95_ms: 3000}      # or {fixed_ms: 500}
faults: {rate_limited: 0.05, server_error: 0.05, overloaded: 0.05, retry_after_seconds: 1}
models:
  sim-judge-strict: {faults: {malformed: 1.0}}
batches: {processing_seconds: 5, errored: 0.1, expired: 0.05}
```

A limit is a token bucket per model that refills at the per-minute rate and holds
`burst_seconds` worth of it (60 = a whole minute, as providers allow; less makes bursts show).
Fault rates are probabilities per request and may add up to at most 1. `batches` sets how the
batch endpoints behave (see `services.llm_sim.batches`): how long a job takes and the share of
its items that error or expire; batch items skip limits, latency and faults.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MAX_FILE_BYTES = 100_000
# normal quantile of 0.95: p95 = median * exp(1.645 sigma) for a lognormal
_Z95 = 1.6448536269514722


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    burst_seconds: float = Field(60.0, gt=0, le=60)


class Latency(_Strict):
    """A fixed delay, or a lognormal one given by its median and 95th percentile."""

    fixed_ms: float | None = Field(None, ge=0)
    median_ms: float | None = Field(None, gt=0)
    p95_ms: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_form(self) -> Latency:
        lognormal = (self.median_ms, self.p95_ms)
        if self.fixed_ms is not None and any(v is not None for v in lognormal):
            raise ValueError("set fixed_ms, or median_ms and p95_ms, not both")
        if (self.median_ms is None) != (self.p95_ms is None):
            raise ValueError("median_ms and p95_ms go together")
        if self.median_ms is not None and self.p95_ms is not None and self.p95_ms < self.median_ms:
            raise ValueError("p95_ms must not be below median_ms")
        return self

    def seconds(self, normal_draw: float) -> float:
        """The delay for a request whose standard normal draw is `normal_draw`."""
        if self.fixed_ms is not None:
            return self.fixed_ms / 1000
        if self.median_ms is None or self.p95_ms is None:
            return 0.0
        sigma = math.log(self.p95_ms / self.median_ms) / _Z95
        return self.median_ms * math.exp(sigma * normal_draw) / 1000


# How each fault shows itself; the names are the keys of `faults`.
FAULT_KINDS = (
    "rate_limited",  # 429 with retry-after, as if another client had used the quota
    "server_error",  # 500
    "unavailable",  # 503
    "overloaded",  # 529, Anthropic's "overloaded"
    "hang",  # never answers; the client's read timeout has to end it
    "truncated",  # a 200 whose JSON body stops halfway
    "malformed",  # a valid envelope whose answer text is broken JSON
    "nul_byte",  # a valid answer whose text holds a NUL byte, which Postgres refuses in text
    "bad_request",  # 400
    "unauthorized",  # 401
    "insufficient_quota",  # the account is out of money: terminal, must not be retried
)


class Faults(_Strict):
    rate_limited: float = Field(0.0, ge=0, le=1)
    server_error: float = Field(0.0, ge=0, le=1)
    unavailable: float = Field(0.0, ge=0, le=1)
    overloaded: float = Field(0.0, ge=0, le=1)
    hang: float = Field(0.0, ge=0, le=1)
    truncated: float = Field(0.0, ge=0, le=1)
    malformed: float = Field(0.0, ge=0, le=1)
    nul_byte: float = Field(0.0, ge=0, le=1)
    bad_request: float = Field(0.0, ge=0, le=1)
    unauthorized: float = Field(0.0, ge=0, le=1)
    insufficient_quota: float = Field(0.0, ge=0, le=1)
    # sent with injected 429s and 503s
    retry_after_seconds: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _rates_fit(self) -> Faults:
        if sum(self.rate(kind) for kind in FAULT_KINDS) > 1 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        return self

    def rate(self, kind: str) -> float:
        value: float = getattr(self, kind)
        return value

    def pick(self, draw: float) -> str | None:
        """The fault for a request whose uniform draw in [0, 1) is `draw`, if any."""
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += self.rate(kind)
            if draw < edge:
                return kind
        return None


class BatchConditions(_Strict):
    """A batch job ends `processing_seconds` after it was created; each item errors (as a
    server error) or expires at the given rates, drawn from the seed and the item's id."""

    processing_seconds: float = Field(2.0, ge=0)
    errored: float = Field(0.0, ge=0, le=1)
    expired: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _rates_fit(self) -> BatchConditions:
        if self.errored + self.expired > 1 + 1e-9:
            raise ValueError("errored and expired add up to more than 1")
        return self


class ModelConditions(_Strict):
    limits: Limits | None = None
    latency: Latency | None = None
    faults: Faults | None = None


class Conditions(_Strict):
    seed: int = 0
    limits: Limits | None = None
    latency: Latency | None = None
    faults: Faults | None = None
    models: dict[str, ModelConditions] = Field(default_factory=dict)
    batches: BatchConditions = BatchConditions()

    def for_model(self, model: str) -> ModelConditions:
        own = self.models.get(model, ModelConditions())
        return ModelConditions(
            limits=own.limits or self.limits,
            latency=own.latency or self.latency,
            faults=own.faults or self.faults,
        )

    @property
    def active(self) -> bool:
        return (
            any((self.limits, self.latency, self.faults, self.models))
            or self.batches != BatchConditions()
        )


class ConditionsError(ValueError):
    """A conditions file or flag that does not make sense; the message names it."""


def load_conditions(path: Path | None, overrides: dict[str, Any]) -> Conditions:
    """Conditions from a YAML or JSON file (optional) with command-line `overrides` applied to
    its top level, section by section (e.g. {"limits": {...}, "seed": 3})."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConditionsError(f"{path}: cannot read ({exc.strerror})") from None
        if len(data) > MAX_FILE_BYTES:
            raise ConditionsError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        try:
            parsed = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise ConditionsError(f"{path}: not valid YAML or JSON ({exc})") from None
        if parsed is not None and not isinstance(parsed, dict):
            raise ConditionsError(f"{path}: expected a mapping at the top level")
        raw = parsed or {}
    for section, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **value}
        else:
            raw[section] = value
    try:
        return Conditions.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        source = str(path) if path is not None else "command line"
        raise ConditionsError(f"{source}: {where}: {first['msg']}") from None


def describe(conditions: Conditions) -> str:
    """One line for the log: what this simulator run injects."""
    return json.dumps(conditions.model_dump(exclude_none=True), sort_keys=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line flags for conditions; they override the file's top-level sections."""
    group = parser.add_argument_group("traffic conditions (for every model; a file can set more)")
    group.add_argument("--conditions", type=Path, help="YAML or JSON file of conditions")
    group.add_argument("--seed", type=int, help="seed of the fault and latency draws")
    group.add_argument("--rpm", type=int, help="requests per minute per model")
    group.add_argument("--tpm", type=int, help="tokens per minute per model")
    group.add_argument(
        "--burst-seconds", type=float, help="how many seconds of the limit a bucket holds"
    )
    group.add_argument("--latency-median-ms", type=float, help="lognormal latency: the median")
    group.add_argument("--latency-p95-ms", type=float, help="lognormal latency: the 95th pct")
    group.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"inject a fault at a rate in [0, 1]; kinds: {', '.join(FAULT_KINDS)}",
    )
    group.add_argument(
        "--retry-after-seconds", type=float, help="retry-after sent with injected 429s and 503s"
    )


def from_arguments(args: argparse.Namespace) -> Conditions:
    """Conditions from parsed flags (see `add_arguments`); ConditionsError names a bad one."""
    overrides: dict[str, Any] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    limits = {
        key: value
        for key, value in (
            ("requests_per_minute", args.rpm),
            ("tokens_per_minute", args.tpm),
            ("burst_seconds", args.burst_seconds),
        )
        if value is not None
    }
    if limits:
        overrides["limits"] = limits
    if args.latency_median_ms is not None or args.latency_p95_ms is not None:
        overrides["latency"] = {"median_ms": args.latency_median_ms, "p95_ms": args.latency_p95_ms}
    faults: dict[str, Any] = {}
    for item in args.fault:
        kind, sep, rate = item.partition("=")
        if not sep:
            raise ConditionsError(f"--fault {item!r}: expected KIND=RATE")
        try:
            faults[kind.strip()] = float(rate)
        except ValueError:
            raise ConditionsError(f"--fault {item!r}: {rate!r} is not a number") from None
    if args.retry_after_seconds is not None:
        faults["retry_after_seconds"] = args.retry_after_seconds
    if faults:
        overrides["faults"] = faults
    return load_conditions(args.conditions, overrides)
