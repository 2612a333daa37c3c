"""Where the CPU of one LLM call goes: the pipeline benchmark with a sampling profiler attached.

`python -m bench.profile` runs `bench.pipeline` (default 900 pairs, so the services stay busy
for over a minute), attaches py-spy to every service process once the run is under way, and
splits each process's CPU per paid call by what its samples were doing: the library a sample's
innermost frame belongs to (SQLAlchemy, asyncpg, nats-py, aiohttp, pydantic, the event loop,
JSON, specstress itself ...), with socket reads and writes apart and named by the library
that made them. Postgres, NATS and the simulator are not Python services here: each is one row.
It prints the table and appends one line to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench import pipeline
from bench.recording import header, print_table, record
from specstress.pipeline.stages import STAGE_NAMES

# the stdlib modules whose time is the event loop's own machinery
EVENT_LOOP = ("asyncio/", "contextlib.py", "selectors.py")
SOCKET_WRITE = re.compile(
    r"^(write|writelines|_write_ready|sendall)\b.*(selector_events|transports)"
)
SOCKET_READ = re.compile(r"^_read_ready.*selector_events")
CALLER_LIBRARIES = ("asyncpg", "nats", "aiohttp", "httpx", "uvicorn", "starlette")


def _library(frame: str) -> str | None:
    """The library a frame belongs to, or None for the standard library's modules. py-spy
    names a frame's file from its package root: `sqlalchemy/engine/base.py`, `asyncio/...`."""
    path = frame[frame.rfind("(") + 1 :]
    top = re.split(r"[/.:]", path, maxsplit=1)[0]
    if top in ("specstress", "services"):
        return "specstress"
    if top in sys.stdlib_module_names or not top.isidentifier():
        return None
    return top


def category(stack: list[str]) -> str:
    """What one sample was doing, from its frames (outermost first)."""
    leaf = stack[-1]
    socket = "writes" if SOCKET_WRITE.search(leaf) else "reads" if SOCKET_READ.search(leaf) else ""
    if socket:
        for frame in reversed(stack):
            library = _library(frame)
            if library in CALLER_LIBRARIES:
                return f"socket {socket} ({library})"
        return f"socket {socket} (other)"
    library = _library(leaf)
    if library is not None:
        return library
    if any(part in leaf for part in EVENT_LOOP):
        return "event loop (asyncio)"
    if "json/" in leaf:
        return "json (stdlib)"
    return "other stdlib"


def shares(raw_profile: Path) -> dict[str, float]:
    """Each category's share of a py-spy raw (collapsed stacks) profile's samples."""
    counts: Counter[str] = Counter()
    pending = ""
    for line in raw_profile.read_text(errors="replace").splitlines():
        frames, _, samples = (pending + line).rpartition(" ")
        if not samples.isdigit():
            # a frame name holding a line break (a docstring's) continues on the next line
            pending += line + "\n"
            continue
        pending = ""
        counts[category(frames.split(";"))] += int(samples)
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.items()}


def _recorder(py_spy: str, pid: int, seconds: float, output: Path) -> list[str]:
    return [
        py_spy, "record", "--nonblocking", "--rate", "200", "--duration", str(int(seconds)),
        "--format", "raw", "--output", str(output), "--pid", str(pid),
    ]  # fmt: skip


async def _sample(
    py_spy: str, running: asyncio.Future[dict[str, int]], folder: Path, delay: float, seconds: float
) -> dict[str, Path]:
    """Once the run is under way and `delay` seconds have passed, `seconds` of samples of
    every service."""
    pids = {name: pid for name, pid in (await running).items() if name in STAGE_NAMES}
    await asyncio.sleep(delay)
    outputs = {stage: folder / f"{stage}.txt" for stage in pids}
    recorders = [
        await asyncio.create_subprocess_exec(
            *_recorder(py_spy, pid, seconds, outputs[stage]),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for stage, pid in pids.items()
    ]
    for recorder in recorders:
        await recorder.wait()
    return {stage: path for stage, path in outputs.items() if path.is_file()}


async def measure(args: argparse.Namespace, py_spy: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="specstress-profile-") as folder:
        running: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        sampling = asyncio.create_task(
            _sample(py_spy, running, Path(folder), args.delay, args.seconds)
        )
        run = await pipeline.run(args, running)
        if not sampling.done():
            sampling.cancel()
            raise SystemExit("error: the run ended before the profile was taken; raise --pairs")
        profiles = {stage: shares(path) for stage, path in (await sampling).items()}
    paid = run["checks"]["paid_calls"]
    per_call = {p["name"]: 1000 * p["cpu_seconds"] / paid for p in run["processes"]}
    breakdown = {
        stage: {name: round(per_call[stage] * share, 4) for name, share in profile.items()}
        for stage, profile in profiles.items()
    }
    return {
        **header("profile"),
        "parameters": {"pairs": args.pairs, "seconds": args.seconds, "delay": args.delay},
        "pipeline": {
            key: run[key]
            for key in ("llm_calls_per_second", "llm_calls_per_second_whole_run", "checks")
        },
        "cpu_ms_per_call": {name: round(ms, 4) for name, ms in per_call.items()},
        "service_cpu_ms_per_call_by_category": breakdown,
    }


def report(result: dict[str, Any]) -> None:
    breakdown = result["service_cpu_ms_per_call_by_category"]
    stages = list(breakdown)
    totals = Counter[str]()
    for profile in breakdown.values():
        totals.update(profile)
    rows = [
        [name, f"{ms:.3f}", *(f"{breakdown[s].get(name, 0.0):.3f}" for s in stages)]
        for name, ms in totals.most_common()
    ]
    per_call = result["cpu_ms_per_call"]
    rows += [
        [f"process: {name}", f"{ms:.3f}", *("" for _ in stages)]
        for name, ms in per_call.items()
        if name not in breakdown
    ]
    rows.append(["all processes", f"{sum(per_call.values()):.3f}", *("" for _ in stages)])
    console = print_table(
        f"CPU ms per paid LLM call @ {result['commit']}",
        ["what", "all services", *stages],
        rows,
        width=200,
    )
    figures = result["pipeline"]
    console.print(
        f"LLM calls/s end to end {figures['llm_calls_per_second']}, "
        f"whole run {figures['llm_calls_per_second_whole_run']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=900, help="value pairs to push")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds sampled")
    parser.add_argument("--delay", type=float, default=10.0, help="seconds before sampling")
    parser.add_argument("--no-record", action="store_true", help="do not append to results.jsonl")
    own = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).is_file():
        raise SystemExit("error: py-spy not found (it comes with `make install`: pip '.[dev]')")
    args = pipeline.parse_args(["--pairs", str(own.pairs), "--no-record"])
    args.seconds, args.delay = own.seconds, own.delay
    result = asyncio.run(measure(args, py_spy))
    report(result)
    if not own.no_record:
        record(result)
    if any(result["pipeline"]["checks"][key] for key in pipeline.PROBLEMS):
        sys.exit(1)


if __name__ == "__main__":
    main()
