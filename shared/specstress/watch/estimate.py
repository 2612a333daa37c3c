"""What a model's backfill would cost, before it starts.

Answers: every stored scenario once, at the token counts the family's existing answers had on
average (from the ledger), or, for a family with no answers yet, the prompt at four characters
a token and the most the model may write; times the model's prices. Classification and
judging: what the ledger shows they cost per classified answer and per verdict so far, times
the answers to classify and the verdicts the flagged share of scenarios would need.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config, ModelConfig
from specstress.db import reading
from specstress.llm.traffic.limits import estimate_tokens

__all__ = ["Estimate", "estimate_backfill"]


class Estimate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_key: str
    scenarios: int
    input_tokens_per_answer: float
    output_tokens_per_answer: float
    # where the token counts come from
    token_source: str
    answers_usd: float
    classification_usd: float
    flagged_share: float
    verdicts: int
    judging_usd: float

    @property
    def total_usd(self) -> float:
        return self.answers_usd + self.classification_usd + self.judging_usd

    def describe(self) -> str:
        return (
            f"{self.model_key}: {self.scenarios} scenarios x "
            f"{self.input_tokens_per_answer:.0f} in / {self.output_tokens_per_answer:.0f} out "
            f"tokens ({self.token_source}) = ${self.answers_usd:.4f} answers + "
            f"${self.classification_usd:.4f} classification + ${self.judging_usd:.4f} judging "
            f"({self.verdicts} verdicts at {self.flagged_share:.0%} flagged) = "
            f"${self.total_usd:.4f}"
        )


_FAMILY_TOKENS = text(
    "SELECT count(*) AS n, avg(c.input_tokens) AS input, avg(c.output_tokens) AS output "
    "FROM responses r JOIN models m USING (model_key) "
    "JOIN llm_calls c ON c.request_hash = r.llm_call_hash AND c.status = 'ok' "
    "WHERE m.family = :family AND r.model_key <> :key"
)
_STAGE_SPEND = text(
    "SELECT coalesce(sum(cost_usd), 0) FROM llm_calls WHERE stage = :stage AND status = 'ok'"
)


async def estimate_backfill(engine: AsyncEngine, config: Config, model: ModelConfig) -> Estimate:
    async with reading(engine) as conn:
        scenarios = int(await conn.scalar(text("SELECT count(*) FROM scenarios")) or 0)
        family = (
            await conn.execute(_FAMILY_TOKENS, {"family": model.family, "key": model.key})
        ).one()
        if family.n:
            input_tokens, output_tokens = float(family.input), float(family.output)
            source = f"average of {family.n} answers of family {model.family}"
        else:
            prompt_chars = float(
                await conn.scalar(text("SELECT coalesce(avg(length(query)), 0) FROM scenarios"))
                or 0
            )
            input_tokens = float(math.ceil(prompt_chars / 4))
            output_tokens = float(estimate_tokens(model, ()))
            source = "prompt length; the most the model may write"
        classified = int(await conn.scalar(text("SELECT count(*) FROM classifications")) or 0)
        classifier_spend = float(await conn.scalar(_STAGE_SPEND, {"stage": "classifier"}) or 0)
        verdict_count = int(await conn.scalar(text("SELECT count(*) FROM verdicts")) or 0)
        judge_spend = float(await conn.scalar(_STAGE_SPEND, {"stage": "compliance_judge"}) or 0)
        flagged = int(
            await conn.scalar(
                text("SELECT count(DISTINCT scenario_id) FROM disagreement WHERE high")
            )
            or 0
        )
    prices = model.prices
    answers_usd = (
        scenarios
        * (input_tokens * prices.input_per_mtok + output_tokens * prices.output_per_mtok)
        / 1e6
    )
    flagged_share = flagged / scenarios if scenarios else 0.0
    per_answer = sum(
        len(config.roles.judges) for spec in config.specs if model.family in spec.families
    )
    verdicts = math.ceil(scenarios * flagged_share * per_answer)
    return Estimate(
        model_key=model.key,
        scenarios=scenarios,
        input_tokens_per_answer=round(input_tokens, 1),
        output_tokens_per_answer=round(output_tokens, 1),
        token_source=source,
        answers_usd=round(answers_usd, 6),
        classification_usd=round(
            scenarios * (classifier_spend / classified if classified else 0.0), 6
        ),
        flagged_share=round(flagged_share, 4),
        verdicts=verdicts,
        judging_usd=round(verdicts * (judge_spend / verdict_count if verdict_count else 0.0), 6),
    )
