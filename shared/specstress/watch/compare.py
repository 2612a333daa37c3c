"""The release report: what a new model changes, against its family and its predecessor.

Computed from the stored facts (positions, refusal types, verdicts) over the scenarios the new
model answered:
- per model set it belongs to: mean D with and without it, and the scenarios it tips over the
  threshold (high with it, not high or not computable without it);
- its outlier answers per model set (the outlier rule of `outliers`);
- refusal rate and refusal-type mix, for it, the predecessor and the rest of its family;
- the majority and any-judge flag rates under its family's spec, for it, the predecessor, the
  rest of the family and the family with it; the change it brings to the family's majority
  rate is `flag_rate_shift`;
- the 20 scenarios where its positions are furthest (L1) from the predecessor's.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config
from specstress.watch.facts import Facts, disagreement, is_outlier, load_facts, set_members

__all__ = [
    "FURTHEST",
    "Comparison",
    "Compliance",
    "Flags",
    "Moved",
    "Refusals",
    "SetChange",
    "build_comparison",
    "compare",
    "predecessor_of",
]

FURTHEST = 20
DIGITS = 6


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SetChange(_Frozen):
    model_set: str
    # scenarios where D is computable both with and without the model
    scenarios: int
    mean_d_with: float | None
    mean_d_without: float | None
    delta: float | None
    newly_high: list[str]
    outliers: int


class Refusals(_Frozen):
    labelled: int
    refusals: int
    rate: float | None
    types: dict[str, int]


class Flags(_Frozen):
    judged: int
    majority: int
    any: int
    majority_rate: float | None
    any_rate: float | None


class Compliance(_Frozen):
    spec_id: str
    spec_version: str
    model: Flags
    predecessor: Flags | None
    family: Flags
    family_with_model: Flags


class Moved(_Frozen):
    scenario_id: str
    model: tuple[int, int]
    predecessor: tuple[int, int]
    distance: int


class Comparison(_Frozen):
    model_key: str
    family: str
    against: str | None
    scenarios: int
    disagreement: list[SetChange]
    refusals_model: Refusals
    refusals_predecessor: Refusals | None
    refusals_family: Refusals
    compliance: list[Compliance]
    flag_rate_shift: float | None
    moved_furthest: list[Moved]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def predecessor_of(facts: Facts, model_key: str, named: str | None) -> str | None:
    """The named predecessor, else the most recently registered other model of the family."""
    if named is not None:
        return named
    family = facts.families.get(model_key)
    others = [k for k, f in facts.families.items() if f == family and k != model_key]
    if not others:
        return None
    return max(others, key=lambda k: (facts.registered_at[k], k))


def _refusals(facts: Facts, response_ids: list[str]) -> Refusals:
    labels = [facts.refusals[r] for r in response_ids if r in facts.refusals]
    count = sum(1 for _, refusal in labels if refusal)
    return Refusals(
        labelled=len(labels),
        refusals=count,
        rate=_round(count / len(labels)) if labels else None,
        types=dict(sorted(Counter(t for t, _ in labels).items())),
    )


def _flags(
    config: Config, facts: Facts, response_ids: list[str], spec_id: str, version: str
) -> Flags:
    judges = set(config.roles.judges)
    judged = majority = anyone = 0
    for response_id in response_ids:
        decisions = [
            d
            for (judge, s, v), d in facts.verdicts.get(response_id, {}).items()
            if s == spec_id and v == version and judge in judges
        ]
        if not decisions:
            continue
        judged += 1
        against = sum(1 for d in decisions if d != "compliant")
        majority += against * 2 > len(decisions)
        anyone += against >= 1
    return Flags(
        judged=judged,
        majority=majority,
        any=anyone,
        majority_rate=_round(majority / judged) if judged else None,
        any_rate=_round(anyone / judged) if judged else None,
    )


def _set_change(
    config: Config, facts: Facts, model_key: str, name: str, scenarios: list[str]
) -> SetChange | None:
    threshold = config.disagreement.threshold
    with_d: list[float] = []
    without_d: list[float] = []
    newly_high: list[str] = []
    outliers = 0
    belongs = False
    for scenario_id in scenarios:
        by_model = facts.positions[scenario_id]
        members = set_members(config, name, by_model, facts)
        if model_key not in members:
            continue
        belongs = True
        others = [k for k in members if k != model_key]
        if is_outlier(config, by_model[model_key], [by_model[k] for k in others]):
            outliers += 1
        if len(members) < 2:
            continue
        d_with = disagreement([by_model[k] for k in members])
        d_without = disagreement([by_model[k] for k in others]) if len(others) >= 2 else None
        if d_with >= threshold and (d_without is None or d_without < threshold):
            newly_high.append(scenario_id)
        if d_without is not None:
            with_d.append(d_with)
            without_d.append(d_without)
    if not belongs:
        return None
    mean_with, mean_without = _mean(with_d), _mean(without_d)
    return SetChange(
        model_set=name,
        scenarios=len(with_d),
        mean_d_with=_round(mean_with),
        mean_d_without=_round(mean_without),
        delta=_round(
            None if mean_with is None or mean_without is None else mean_with - mean_without
        ),
        newly_high=sorted(newly_high),
        outliers=outliers,
    )


def build_comparison(
    config: Config, facts: Facts, model_key: str, against: str | None = None
) -> Comparison:
    """The comparison of `model_key` from loaded facts (pure: the tests recompute it apart)."""
    family = facts.families[model_key]
    predecessor = predecessor_of(facts, model_key, against)
    scenarios = sorted(s for s, by_model in facts.positions.items() if model_key in by_model)
    own = [facts.answers[s][model_key] for s in scenarios]
    kin = [
        facts.answers[s][k]
        for s in scenarios
        for k in facts.positions[s]
        if k != model_key and facts.families.get(k) == family
    ]
    before = (
        [facts.answers[s][predecessor] for s in scenarios if predecessor in facts.positions[s]]
        if predecessor is not None
        else []
    )
    compliance = []
    shift: float | None = None
    for spec in config.specs:
        if family not in spec.families:
            continue
        family_flags = _flags(config, facts, kin, spec.id, spec.version)
        with_model = _flags(config, facts, kin + own, spec.id, spec.version)
        compliance.append(
            Compliance(
                spec_id=spec.id,
                spec_version=spec.version,
                model=_flags(config, facts, own, spec.id, spec.version),
                predecessor=None
                if predecessor is None
                else _flags(config, facts, before, spec.id, spec.version),
                family=family_flags,
                family_with_model=with_model,
            )
        )
        if (
            shift is None
            and with_model.majority_rate is not None
            and family_flags.majority_rate is not None
        ):
            shift = _round(with_model.majority_rate - family_flags.majority_rate)
    moved: list[Moved] = []
    if predecessor is not None:
        for s in scenarios:
            theirs = facts.positions[s].get(predecessor)
            if theirs is None:
                continue
            mine = facts.positions[s][model_key]
            distance = abs(mine[0] - theirs[0]) + abs(mine[1] - theirs[1])
            moved.append(Moved(scenario_id=s, model=mine, predecessor=theirs, distance=distance))
        moved.sort(key=lambda m: (-m.distance, m.scenario_id))
    changes = [
        change
        for name in config.model_sets
        if (change := _set_change(config, facts, model_key, name, scenarios)) is not None
    ]
    return Comparison(
        model_key=model_key,
        family=family,
        against=predecessor,
        scenarios=len(scenarios),
        disagreement=changes,
        refusals_model=_refusals(facts, own),
        refusals_predecessor=None if predecessor is None else _refusals(facts, before),
        refusals_family=_refusals(facts, kin),
        compliance=compliance,
        flag_rate_shift=shift,
        moved_furthest=moved[:FURTHEST],
    )


async def compare(
    engine: AsyncEngine, config: Config, model_key: str, against: str | None = None
) -> Comparison:
    facts = await load_facts(engine)
    if model_key not in facts.families:
        raise KeyError(model_key)
    if against is not None and against not in facts.families:
        raise KeyError(against)
    return build_comparison(config, facts, model_key, against)
