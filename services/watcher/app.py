"""The watcher: new models at the providers -> registered by rule -> release reports.

On its own schedule (`watch.poll_seconds`, jittered) the process holding the fleet's watch
lock lists every watched provider account, records what is new, registers what its rule
allows within budget (publishing models.registered, which the responder backfills), retires
what is gone; every `watch.check_seconds` it looks for registered models whose backfill has
completed and stores and announces (models.compared) their comparison.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from specstress.pipeline.service import Service
from specstress.pipeline.stage import Stage
from specstress.watch import Leadership, Watcher, next_wait

service = Service("watcher")
log = logging.getLogger("specstress.watch")


@service.runs
async def watch(stage: Stage) -> None:
    settings = stage.config.watch
    watcher = Watcher(stage.config, stage.engine, stage.gateway, stage.emit)
    leadership = Leadership(stage.engine)
    rng = random.Random()
    next_poll = 0.0
    try:
        while True:
            try:
                if await leadership.held():
                    if time.monotonic() >= next_poll:
                        await watcher.poll()
                        next_poll = time.monotonic() + next_wait(
                            settings.poll_seconds, settings.jitter, rng
                        )
                    await watcher.check_backfills()
            except Exception:
                # a database or bus hiccup: logged, and the next round tries again
                log.exception("watch round failed")
            await asyncio.sleep(settings.check_seconds)
    finally:
        await leadership.release()
