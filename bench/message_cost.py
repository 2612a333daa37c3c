"""Per-message machinery cost: contracts (pydantic and JSON), the bus, logging and metrics.

Run with `python -m bench.message_cost`. What the runtime does for every message outside the
handler's own work, each measured alone with timeit in CPU time of this process (best of
several repeats, so other jobs on the machine move it little):
- consume side: the poison check (`bytes_problem`, `json.loads`, `value_problem`) and
  `model_validate_json` of the event;
- publish side: `model_dump_json().encode()` and `message_id()` (the Nats-Msg-Id);
- the same JSON work with orjson and msgspec, when they are installed, as the alternatives;
- logging: one INFO line written to a file, and a DEBUG call below the level;
- metrics: a labelled counter's `inc()` and a histogram's `observe()`;
- the bus, on a private nats-server with JetStream: publish awaiting each PubAck, publishes
  pipelined (PubAcks awaited together), and pull fetch + ack; CPU of this client and of the
  server per message.
The events are the four most frequent on the bus (ResponseRequested, ResponseCreated,
ClassificationsCreated with six answers, VerdictRequested), in equal shares.

Then per LLM call: the latest recorded pipeline run (bench/results.jsonl) gives its CPU per
call and its bus messages and deliveries per call; the machinery's share of the CPU per call
follows. It prints a table and appends one JSON line to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import tempfile
import time
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StreamConfig
from prometheus_client import CollectorRegistry, Counter, Histogram
from rich.console import Console
from rich.table import Table

from bench.recording import RESULTS, cpu_seconds, header, measure_and_record
from specstress.contracts import (
    ClassificationsCreated,
    Event,
    ResponseCreated,
    ResponseRequested,
    VerdictRequested,
)
from specstress.ids import stable_id
from specstress.local.servers import start_nats
from specstress.text.clean import bytes_problem, value_problem

HOT_EVENTS: tuple[Event, ...] = (
    ResponseRequested(scenario_id=stable_id("scenario", 1), model_key="aurora-cautious"),
    ResponseCreated(
        response_id=stable_id("response", 1),
        scenario_id=stable_id("scenario", 1),
        pair_id=stable_id("pair", 1),
        model_key="aurora-cautious",
    ),
    ClassificationsCreated(
        scenario_id=stable_id("scenario", 1),
        response_ids=[stable_id("response", n) for n in range(6)],
    ),
    VerdictRequested(
        response_id=stable_id("response", 1), judge="judge-aurora", spec_id="aurora-spec"
    ),
)


def per_call(action: Callable[[], object], repeats: int = 5, budget: float = 0.2) -> float:
    """Microseconds of CPU one call of `action` takes: best of `repeats` timed loops."""
    timer = timeit.Timer(action, timer=time.process_time)
    number, _ = timer.autorange()
    number = max(1, int(number * budget / 0.2))
    return min(timer.repeat(repeats, number)) / number * 1e6


def over_events(action: Callable[[Event, bytes], object]) -> float:
    """Mean microseconds of `action` over the hot events (the event and its JSON bytes)."""
    costs = []
    for event in HOT_EVENTS:
        data = event.model_dump_json().encode()
        costs.append(per_call(partial(action, event, data)))
    return sum(costs) / len(costs)


def poison_check(data: bytes) -> object:
    """The runtime's check before parsing (specstress.pipeline.service._poison)."""
    return bytes_problem(data) or value_problem(json.loads(data))


def _installed(module: str) -> Any:
    """The module, or None where it is not installed (the alternatives are no dependency)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def contracts_costs() -> dict[str, float]:
    costs = {
        "consume: poison check": over_events(lambda _, data: poison_check(data)),
        "consume: model_validate_json": over_events(
            lambda event, data: type(event).model_validate_json(data)
        ),
        "publish: model_dump_json": over_events(lambda event, _: event.model_dump_json().encode()),
        "publish: message_id": over_events(lambda event, _: event.message_id()),
    }
    orjson = _installed("orjson")
    if orjson is not None:
        costs["orjson: loads + model_validate"] = over_events(
            lambda event, data: type(event).model_validate(orjson.loads(data))
        )
        costs["orjson: dumps(model_dump())"] = over_events(
            lambda event, _: orjson.dumps(event.model_dump())
        )
        costs["orjson: message_id body (sorted dumps)"] = over_events(
            lambda event, _: orjson.dumps(
                [event.subject, event.model_dump(mode="json")], option=orjson.OPT_SORT_KEYS
            )
        )
    msgspec = _installed("msgspec")
    if msgspec is not None:
        costs["msgspec: decode + model_validate"] = over_events(
            lambda event, data: type(event).model_validate(msgspec.json.decode(data))
        )
        costs["msgspec: decode only (untyped)"] = over_events(
            lambda _, data: msgspec.json.decode(data)
        )
    return costs


def logging_and_metrics_costs(folder: Path) -> dict[str, float]:
    logger = logging.getLogger("bench.message_cost")
    logger.propagate = False
    handler = logging.FileHandler(folder / "bench.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    registry = CollectorRegistry()
    counter = Counter(
        "bench_messages", "messages", ["service", "subject", "outcome"], registry=registry
    )
    histogram = Histogram("bench_latency", "latency", ["service", "subject"], registry=registry)
    subject = HOT_EVENTS[0].subject
    try:
        return {
            "logging: INFO line to a file": per_call(
                lambda: logger.info("%s: handled %s (delivery %d)", "responder", subject, 1)
            ),
            "logging: DEBUG below the level": per_call(
                lambda: logger.debug("%s: handled %s (delivery %d)", "responder", subject, 1)
            ),
            "metrics: labelled counter inc": per_call(
                lambda: counter.labels("responder", subject, "ok").inc()
            ),
            "metrics: labelled histogram observe": per_call(
                lambda: histogram.labels("responder", subject).observe(0.01)
            ),
        }
    finally:
        logger.removeHandler(handler)
        handler.close()


async def bus_costs(folder: Path, messages: int) -> dict[str, dict[str, float]]:
    """Per message: wall and CPU microseconds of this client and of nats-server."""
    server = start_nats(folder / "nats")
    client = await nats.connect(server.url)
    try:
        js = client.jetstream()
        await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"]))
        bodies = [event.model_dump_json().encode() for event in HOT_EVENTS]

        async def measured(work: Callable[[], Any]) -> dict[str, float]:
            wall, cpu, server_cpu = (
                time.perf_counter(),
                time.process_time(),
                cpu_seconds(server.pid),
            )
            await work()
            return {
                "wall_us": (time.perf_counter() - wall) / messages * 1e6,
                "client_cpu_us": (time.process_time() - cpu) / messages * 1e6,
                "server_cpu_us": (cpu_seconds(server.pid) - server_cpu) / messages * 1e6,
            }

        async def one_by_one() -> None:
            for n in range(messages):
                await js.publish("bench.one", bodies[n % 4], headers={"Nats-Msg-Id": f"one-{n}"})

        async def pipelined() -> None:
            for start in range(0, messages, 100):
                await asyncio.gather(
                    *(
                        js.publish(
                            "bench.many", bodies[n % 4], headers={"Nats-Msg-Id": f"many-{n}"}
                        )
                        for n in range(start, min(start + 100, messages))
                    )
                )

        subscription = await js.pull_subscribe("bench.one", durable="bench")

        async def fetch_and_ack() -> None:
            left = messages
            while left:
                batch = await subscription.fetch(min(100, left), timeout=5)
                for message in batch:
                    await message.ack()
                left -= len(batch)

        return {
            "publish, each PubAck awaited": await measured(one_by_one),
            "publish, 100 pipelined": await measured(pipelined),
            "pull fetch (100) + ack": await measured(fetch_and_ack),
        }
    finally:
        await client.close()
        server.stop()


def latest_pipeline_run() -> dict[str, Any] | None:
    """The newest recorded pipeline run that counted its bus messages."""
    runs = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    counted = [r for r in runs if r.get("benchmark") == "pipeline" and "bus" in r]
    return counted[-1] if counted else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="specstress-message-cost-") as name:
        folder = Path(name)
        contracts = contracts_costs()
        logging_metrics = logging_and_metrics_costs(folder)
        bus = asyncio.run(bus_costs(folder, args.messages))
    # what one message costs this process on each side, with the runtime as it is
    consume_us = (
        contracts["consume: poison check"]
        + contracts["consume: model_validate_json"]
        + bus["pull fetch (100) + ack"]["client_cpu_us"]
        + logging_metrics["metrics: labelled counter inc"]
        + logging_metrics["metrics: labelled histogram observe"]
    )
    publish_us = (
        contracts["publish: model_dump_json"]
        + contracts["publish: message_id"]
        + bus["publish, 100 pipelined"]["client_cpu_us"]
    )
    server_us = (
        bus["publish, 100 pipelined"]["server_cpu_us"]
        + bus["pull fetch (100) + ack"]["server_cpu_us"]
    )
    result: dict[str, Any] = {
        **header("message_cost"),
        "parameters": {"bus_messages": args.messages},
        "contracts_us": {k: round(v, 2) for k, v in contracts.items()},
        "logging_and_metrics_us": {k: round(v, 2) for k, v in logging_metrics.items()},
        "bus_us": {k: {f: round(x, 1) for f, x in v.items()} for k, v in bus.items()},
        "per_message_cpu_us": {
            "consume": round(consume_us, 1),
            "publish": round(publish_us, 1),
            "nats_server": round(server_us, 1),
        },
    }
    pipeline = latest_pipeline_run()
    if pipeline is not None:
        calls = pipeline["checks"]["paid_calls"]
        cpu_per_call_ms = sum(p["cpu_seconds"] for p in pipeline["processes"]) / calls * 1e3
        published = pipeline["bus"]["messages"] / calls
        delivered = pipeline["bus"]["deliveries"] / calls
        machinery_ms = (published * (publish_us + server_us) + delivered * consume_us) / 1e3
        result["per_llm_call"] = {
            "pipeline_run": f"{pipeline['time']} @ {pipeline['commit']}",
            "cpu_ms": round(cpu_per_call_ms, 2),
            "messages_published": round(published, 2),
            "messages_delivered": round(delivered, 2),
            "machinery_cpu_ms": round(machinery_ms, 3),
            "machinery_share": round(machinery_ms / cpu_per_call_ms, 3),
        }
    return result


def report(result: dict[str, Any]) -> None:
    console = Console(width=120)
    table = Table("per message", "µs of CPU", title=f"message cost @ {result['commit']}")
    for name, cost in {**result["contracts_us"], **result["logging_and_metrics_us"]}.items():
        table.add_row(name, f"{cost:.2f}")
    console.print(table)
    bus = Table("bus, per message", "wall µs", "client CPU µs", "server CPU µs")
    for name, figures in result["bus_us"].items():
        bus.add_row(name, *(str(figures[f]) for f in ("wall_us", "client_cpu_us", "server_cpu_us")))
    console.print(bus)
    console.print(f"per message (µs of CPU): {result['per_message_cpu_us']}")
    if "per_llm_call" in result:
        console.print(f"per LLM call: {result['per_llm_call']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="bus messages per measure")
    measure_and_record(parser, run, report)


if __name__ == "__main__":
    main()
