"""The baseline for `bench ingest`: aiohttp + gidgethub verifying a webhook, storing nothing."""

from __future__ import annotations

import os
import sys

from aiohttp import web
from gidgethub import ValidationFailure, sansio

SECRET = os.environ["WEBHOOK_SECRET"]


async def webhook(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        sansio.Event.from_http(request.headers, body, secret=SECRET)
    except ValidationFailure:
        return web.json_response({"error": "signature mismatch"}, status=401)
    return web.json_response({"status": "accepted"}, status=200)


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/api/github/webhooks", webhook)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
