"""A local stand-in for the grader model of the peers' model-graded scores (`bench/peers.py`).

An OpenAI-compatible `/v1/chat/completions` that answers every request at once with a passing
verdict both peers' graders can parse: promptfoo's llm-rubric reads the JSON object, and the
same text ends with Inspect's `GRADE: C`. It counts the requests it answered (`GET /count`), so
a peer's grader calls are counted where they arrive rather than taken from the peer's report.

Run as `python -m bench.mock_grader --port 0`: the first line on stdout names the port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from aiohttp import web

VERDICT = json.dumps(
    {"reason": "The output meets the rubric. GRADE: C", "score": 1.0, "pass": True}
)
COUNT = web.AppKey("count", list[int])


async def _complete(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[COUNT][0] += 1
    return web.json_response(
        {
            "id": f"grade-{request.app[COUNT][0]}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "mock-grader"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": VERDICT},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


async def _count(request: web.Request) -> web.Response:
    return web.json_response({"requests": request.app[COUNT][0]})


def build_app() -> web.Application:
    app = web.Application()
    app[COUNT] = [0]
    app.router.add_post("/v1/chat/completions", _complete)
    app.router.add_get("/count", _count)
    return app


async def _serve(port: int) -> None:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(f"mock grader listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
