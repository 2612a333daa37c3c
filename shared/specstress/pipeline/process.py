"""How every long-running process of the pipeline starts: a `--config` argument, one log format,
the config read strictly (a problem ends the process with one line), and API keys masked in
every log line it writes."""

from __future__ import annotations

import argparse
import gc
import logging
import os

from specstress.config import Config, load_config
from specstress.errors import InputError
from specstress.llm.redact import RedactSecrets

__all__ = ["configure", "parser", "settle_garbage_collector"]

# Container allocations between young-generation collections (CPython's default is 700). A
# stage allocates and frees thousands of short-lived objects a message (events, rows, futures),
# so at the default the collector ran hundreds of times a second, each pass walking what had
# survived so far; at this threshold the services spent 10-15% less CPU per LLM call in the
# pipeline benchmark (bench/README.md), for a few MB more of garbage held between passes.
YOUNG_GENERATION_THRESHOLD = 100_000


def parser(prog: str) -> argparse.ArgumentParser:
    """An argument parser with the `--config` option every pipeline process takes."""
    arguments = argparse.ArgumentParser(prog=prog)
    arguments.add_argument("--config", required=True, help="path to the specstress YAML config")
    return arguments


def configure(config_path: str) -> Config:
    """Set up logging and read the config; exits with one line naming a config problem."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(config_path)
    except InputError as exc:
        raise SystemExit(f"error: {exc}") from None
    # one line per HTTP request drowns the process's own log
    logging.getLogger("httpx").setLevel(logging.WARNING)
    redact = RedactSecrets(os.environ[env] for env in config.api_key_envs() if env in os.environ)
    for log_handler in logging.getLogger().handlers:
        log_handler.addFilter(redact)
    return config


def settle_garbage_collector() -> None:
    """Once a process has imported its code and read its config: move everything alive into
    a generation the collector no longer walks, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
