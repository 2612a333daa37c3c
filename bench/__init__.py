"""Benchmarks: each script records its figures in bench/results.jsonl."""
