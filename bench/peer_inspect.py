"""Inspect's side of `bench/peers.py`, run by the peers' own interpreter (.bench-peers/venv).

One task of `--samples` samples: `generate()` on `mockllm/model`, scored by `model_graded_qa`
whose grader is a second `mockllm/model` answering `GRADE: C`. Both mock models count the
calls they answer. Logging is minimal: no display, no per-sample log, no realtime log, warnings
only. The evaluation's wall clock runs from just before `eval()` to its return; the figures go
to stdout as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

from inspect_ai import Task
from inspect_ai import eval as inspect_eval
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import model_graded_qa
from inspect_ai.solver import generate


class CountingModel:
    """A mock model's answers (mockllm's `custom_outputs` callable), counted."""

    def __init__(self, content: str) -> None:
        self.content = content
        self.calls = 0

    def __call__(self, *_: Any) -> Any:
        self.calls += 1
        output = ModelOutput.from_content(model="mockllm", content=self.content)
        # given usage spares mockllm its token count, whose tokenizer would be downloaded
        output.usage = ModelUsage(input_tokens=10, output_tokens=10, total_tokens=20)
        return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    target = CountingModel("The answer, in a sentence or two.")
    grader = CountingModel("The answer matches the criterion.\n\nGRADE: C")
    task = Task(
        dataset=MemoryDataset(
            [
                Sample(input=f"Question {index}: which value wins here?", target="an answer")
                for index in range(args.samples)
            ]
        ),
        solver=generate(),
        scorer=model_graded_qa(
            model=get_model("mockllm/model", custom_outputs=grader, memoize=False)
        ),
    )
    with tempfile.TemporaryDirectory() as log_dir:
        started = time.perf_counter()
        logs = inspect_eval(
            task,
            model=get_model("mockllm/model", custom_outputs=target, memoize=False),
            display="none",
            log_level="warning",
            log_dir=log_dir,
            log_samples=False,
            log_realtime=False,
            score_display=False,
        )
        seconds = time.perf_counter() - started
    log = logs[0]
    accuracy = log.results.scores[0].metrics["accuracy"].value if log.results else None
    print(
        json.dumps(
            {
                "status": log.status,
                "error": str(log.error.message) if log.error else None,
                "samples": log.results.completed_samples if log.results else 0,
                "generate_calls": target.calls,
                "grader_calls": grader.calls,
                "accuracy": accuracy,
                "seconds": seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
