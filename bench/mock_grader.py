"""A local stand-in for the grader model of the peers' model-graded scores (`bench/peers.py`).

An OpenAI-compatible `/v1/chat/completions` that answers every request at once with a passing
verdict both peers' graders can parse: promptfoo's llm-rubric reads the JSON object, and the
same text ends with Inspect's `GRADE: C`. It counts the requests it answered (`GET /count`), so
a peer's grader calls are counted where they arrive rather than taken from the peer's report.

Run as `python -m bench.mock_grader --port PORT`; it stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    web.run_app(build_app(), host="127.0.0.1", port=parser.parse_args().port, print=None)


if __name__ == "__main__":
    main()
