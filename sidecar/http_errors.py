"""The one shape of every HTTP error the sidecar answers (DESIGN 3.2):
`{"errorCode": "...", "message": "..."}` as JSON."""

from __future__ import annotations

import json

from aiohttp import web

__all__ = ["error"]


def error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"errorCode": code, "message": message}),
        content_type="application/json",
    )
