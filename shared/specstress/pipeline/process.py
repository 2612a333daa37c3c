"""How every long-running process of the pipeline starts: a `--config` argument, one log format,
the config read strictly (a problem ends the process with one line), and API keys masked in
every log line it writes."""

from __future__ import annotations

import argparse
import logging
import os

from specstress.config import Config, load_config
from specstress.errors import InputError
from specstress.llm.redact import RedactSecrets

__all__ = ["configure", "parser"]


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
