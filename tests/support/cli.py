"""The installed `specstress` command, run as a user runs it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

SPECSTRESS = Path(sys.executable).parent / "specstress"


async def run_specstress(*args: str) -> tuple[int, str]:
    """`specstress *args` in a process of its own: its exit code and its output and errors as one
    text. The database and bus come from the config the arguments name: an inherited
    DATABASE_URL or NATS_URL would override it."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    process = await asyncio.create_subprocess_exec(
        str(SPECSTRESS),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**env, "COLUMNS": "200"},
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()
