"""k-center diversity selection at the paper's scale: 411k synthetic unit vectors x 384.

Run with `python bench/kcenter.py` (see --help). The vectors imitate sentence embeddings of the
paper's scenarios: topics (nearly orthogonal directions), value pairs spread around their topic,
and each pair's three variants (neutral, value1, value2) scattered around the pair at a
pair-specific spread, so some variants fall within delta = 0.4 of each other and some do not.
The default mixture keeps about 73% of the rows at delta 0.4, close to the paper's ~300k of
~410k. Synthetic disagreement weights (D in [0, 3], shared by a pair's variants) feed the
weighted run.

Each selection runs in a child process that builds the same vectors, resets its peak-memory
mark, selects, and reports wall time and peak resident memory (Linux VmHWM) during the
selection, with and without the input matrix. A sample of rows is then checked by brute force:
every sampled row lies within delta of a pick, every sampled pick at least delta from the
others. Prints a table and appends one JSON line to bench/results.jsonl. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.recording import header, measure_and_record, print_table
from specstress.method.selection import DEFAULT_DELTA, DEFAULT_WEIGHTED_STOP, select_kcenter

REPO = Path(__file__).resolve().parents[1]
_CHUNK = 30_000


def synthetic_vectors(
    n: int, dim: int, topics: int, seed: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(n, dim) unit rows in pair-of-three structure around topics, and a D weight per row."""
    rng = np.random.default_rng(seed)
    topic = rng.standard_normal((topics, dim), dtype=np.float32)
    topic /= np.linalg.norm(topic, axis=1, keepdims=True)
    pairs = (n + 2) // 3
    centre = topic[rng.integers(topics, size=pairs)]
    centre += 0.055 * rng.standard_normal((pairs, dim), dtype=np.float32)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    # per-dimension spread of a pair's variants, log-uniform: variant distances ~0.2 to ~1.1
    spread = np.exp(rng.uniform(np.log(0.008), np.log(0.04), size=pairs)).astype(np.float32)
    weight = rng.uniform(0.0, 3.0, size=pairs).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for begin in range(0, n, _CHUNK):
        rows = np.arange(begin, min(n, begin + _CHUNK))
        pair = rows // 3
        block = centre[pair] + spread[pair, None] * rng.standard_normal(
            (rows.size, dim), dtype=np.float32
        )
        out[rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out, weight[np.arange(n) // 3]


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _check_sample(
    x: npt.NDArray[np.float32],
    *,
    order: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float32] | None,
    stop: float,
    sample: int,
    seed: int,
) -> dict[str, float]:
    """Brute force on a sample: the largest (weighted) distance of a sampled row to the picks,
    and the smallest (weighted) distance of a sampled pick to the picks made before it."""
    rng = np.random.default_rng(seed)
    picks = x[order]
    rows = rng.choice(x.shape[0], size=min(sample, x.shape[0]), replace=False)
    cover = 0.0
    for row in rows:
        d = float(np.sqrt(max(0.0, 2.0 - 2.0 * float((picks @ x[row]).max()))))
        cover = max(cover, d * (1.0 if weights is None else float(weights[row])))
    separation = np.inf
    for k in rng.choice(np.arange(1, order.size), size=min(sample, order.size - 1), replace=False):
        before = picks[:k] @ picks[k]
        d = float(np.sqrt(max(0.0, 2.0 - 2.0 * float(before.max()))))
        separation = min(separation, d * (1.0 if weights is None else float(weights[order[k]])))
    return {"sampled_cover_max": round(cover, 5), "sampled_separation_min": round(separation, 5)}


def _run_one(spec: dict[str, Any], queue: multiprocessing.Queue[dict[str, Any]]) -> None:
    x, weight = synthetic_vectors(spec["n"], spec["dim"], spec["topics"], spec["data_seed"])
    weights = weight if spec["weighted"] else None
    stop = DEFAULT_WEIGHTED_STOP if spec["weighted"] else DEFAULT_DELTA
    before = _memory_kib("VmRSS")
    # reset the peak-RSS mark, so VmHWM below is the peak during the selection alone
    Path("/proc/self/clear_refs").write_text("5")
    started, cpu_started = time.perf_counter(), time.process_time()
    result = select_kcenter(x, stop=stop, seed=spec["seed"], weights=weights, method=spec["method"])
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = _memory_kib("VmHWM")
    queue.put(
        {
            "method": result.method,
            "requested": spec["method"],
            "weighted": spec["weighted"],
            "stop": stop,
            "selected": int(result.order.size),
            "kept_share": round(result.order.size / spec["n"], 4),
            "seconds": round(seconds, 1),
            # all threads of the process: comparable when other work shares the cores
            "cpu_seconds": round(cpu_seconds, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "input_matrix_mib": round(x.nbytes / 2**20, 1),
            "rss_before_mib": round(before / 1024, 1),
            "selection_overhead_mib": round((peak - before) / 1024, 1),
            **_check_sample(
                x,
                order=result.order,
                weights=weights,
                stop=stop,
                sample=spec["check_sample"],
                seed=spec["seed"],
            ),
        }
    )


def _blas() -> str:
    config = np.show_config(mode="dicts")
    blas = config.get("Build Dependencies", {}).get("blas", {}) if isinstance(config, dict) else {}
    return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    context = multiprocessing.get_context("fork")
    for name in args.runs:
        method, _, variant = name.partition(":")
        if method not in ("auto", "exact", "partitioned") or variant not in ("", "weighted"):
            raise SystemExit(f"--runs: {name!r} is not METHOD or METHOD:weighted")
        weighted = variant == "weighted"
        spec = {
            "n": args.n,
            "dim": args.dim,
            "topics": args.topics,
            "data_seed": args.data_seed,
            "seed": args.seed,
            "method": method,
            "weighted": weighted,
            "check_sample": args.check_sample,
        }
        queue: multiprocessing.Queue[dict[str, Any]] = context.Queue()
        child = context.Process(target=_run_one, args=(spec, queue))
        child.start()
        outcome = queue.get()
        child.join()
        runs.append(outcome)
        print(json.dumps(outcome), flush=True)
    return {
        **header(
            "kcenter",
            blas=_blas(),
            openblas_coretype=os.environ.get("OPENBLAS_CORETYPE"),
            load_average_at_end=[round(v, 2) for v in os.getloadavg()],
        ),
        "parameters": {
            "n": args.n,
            "dim": args.dim,
            "topics": args.topics,
            "data_seed": args.data_seed,
            "seed": args.seed,
            "check_sample": args.check_sample,
        },
        "runs": runs,
    }


def show(result: dict[str, Any]) -> None:
    p = result["parameters"]
    measured = ("seconds", "cpu_seconds", "peak_rss_mib", "input_matrix_mib")
    sampled = ("sampled_cover_max", "sampled_separation_min")
    print_table(
        f"k-center @ {result['commit']}: {p['n']:,} x {p['dim']} float32",
        [
            "method",
            "weighted",
            "stop",
            "selected",
            "kept",
            "seconds",
            "CPU s",
            "peak RSS MiB",
            "of which input",
            "cover max (sample)",
            "separation min (sample)",
        ],
        (
            [
                r["method"],
                "yes" if r["weighted"] else "no",
                r["stop"],
                f"{r['selected']:,}",
                f"{r['kept_share']:.1%}",
                *(r[key] for key in (*measured, *sampled)),
            ]
            for r in result["runs"]
        ),
        width=160,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=411_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--topics", type=int, default=400)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="selection seed (first pick)")
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["exact", "partitioned", "exact:weighted"],
        help="METHOD (auto, exact, partitioned), or METHOD:weighted for the D-weighted variant",
    )
    parser.add_argument("--check-sample", type=int, default=2000)
    measure_and_record(parser, run, show)


if __name__ == "__main__":
    main()
