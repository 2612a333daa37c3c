"""API keys at the simulator: any key is accepted and none is ever logged or echoed.

With `require_key` a request without a key is refused the way its protocol's real API refuses
it, so a test can prove that the pipeline really sends the keys it is configured with.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

# the routes that play a provider; health, the catalogue admin and planted truth stay open
_PROVIDER_PREFIXES = (
    "/v1/models",
    "/v1/chat/completions",
    "/v1/messages",
    "/v1beta/",
    "/v1/files",
    "/v1/batches",
)


def has_key(request: web.Request) -> bool:
    """Whether the request carries a key in any of the places the three protocols put one."""
    bearer = request.headers.get("Authorization", "")
    return bool(
        (bearer.startswith("Bearer ") and bearer[len("Bearer ") :].strip())
        or request.headers.get("x-api-key")
        or request.headers.get("x-goog-api-key")
        or request.query.get("key")
    )


def _refusal(request: web.Request) -> web.Response:
    path = request.path
    if path.startswith("/v1/messages") or "anthropic-version" in request.headers:
        body: dict[str, object] = {
            "type": "error",
            "error": {"type": "authentication_error", "message": "x-api-key header is required"},
        }
        return web.json_response(body, status=401)
    if path.startswith("/v1beta/"):
        body = {
            "error": {
                "code": 401,
                "message": "Method doesn't allow unregistered callers. Please use an API key.",
                "status": "UNAUTHENTICATED",
            }
        }
        return web.json_response(body, status=401)
    body = {
        "error": {
            "message": "You didn't provide an API key.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    return web.json_response(body, status=401)


@web.middleware
async def require_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(_PROVIDER_PREFIXES) and not has_key(request):
        return _refusal(request)
    return await handler(request)
