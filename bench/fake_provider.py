"""The two servers the benchmark starts as child processes of bench/load.py.

* `python bench/load.py --serve-fake PORT`: the fake provider API (aiohttp), Telegram's
  sendMessage and Twilio's Messages.json answered at once, one stdout line per reply;
* `python bench/load.py --serve-bare PORT`: the bare FastAPI endpoint that only returns 200, on
  uvicorn started the way `saypro-bot run` starts it.
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import parse_qs

from bench.common import HOST, TELEGRAM_TOKEN, TWILIO_ACCOUNT_SID

# ------------------------------------------------------------------------------------------------
# The fake provider: `python bench/load.py --serve-fake PORT`
# ------------------------------------------------------------------------------------------------


def serve_fake(port: int) -> None:
    """Telegram's sendMessage and Twilio's Messages.json, answered at once; one stdout line per reply.

    The line is `<channel> <recipient> <time.monotonic()>`. CLOCK_MONOTONIC is the same clock in
    every process on Linux, so the benchmark compares it with its own send times.
    """
    from aiohttp import web

    out = sys.stdout.fileno()
    numbers = iter(range(1, 1 << 62))

    async def telegram_send(request: web.Request) -> web.Response:
        arrived = time.monotonic()
        form = parse_qs((await request.read()).decode())
        chat_id = form.get("chat_id", ["0"])[0]
        os.write(out, f"telegram {chat_id} {arrived:.6f}\n".encode())
        result = {
            "message_id": next(numbers),
            "date": int(time.time()),
            "chat": {"id": int(chat_id), "type": "private", "first_name": "Bench"},
        }
        return web.json_response({"ok": True, "result": result})

    async def telegram_ok(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "result": True})

    async def twilio_create(request: web.Request) -> web.Response:
        arrived = time.monotonic()
        form = parse_qs((await request.read()).decode())
        to = form.get("To", [""])[0]
        channel = "whatsapp" if to.startswith("whatsapp:") else "sms"
        os.write(out, f"{channel} {to.removeprefix('whatsapp:')} {arrived:.6f}\n".encode())
        sid = f"SM{next(numbers):032x}"
        body = {
            "account_sid": TWILIO_ACCOUNT_SID,
            "api_version": "2010-04-01",
            "sid": sid,
            "status": "queued",
            "to": to,
            "from": form.get("From", [""])[0],
            "body": "",
            "direction": "outbound-api",
            "num_media": "0",
            "num_segments": "1",
            "date_created": None,
            "date_sent": None,
            "date_updated": None,
            "error_code": None,
            "error_message": None,
            "price": None,
            "uri": f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/{sid}.json",
        }
        return web.json_response(body, status=201)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=2**20)
    app.router.add_post(f"/bot{TELEGRAM_TOKEN}/sendMessage", telegram_send)
    app.router.add_post(f"/bot{TELEGRAM_TOKEN}/answerCallbackQuery", telegram_ok)
    app.router.add_post(f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json", twilio_create)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


# ------------------------------------------------------------------------------------------------
# The bare endpoint: `python bench/load.py --serve-bare PORT`
# ------------------------------------------------------------------------------------------------


def serve_bare(port: int) -> None:
    """One FastAPI route returning an empty 200, on `uvicorn.run(app, host, port, log_config=None)` as the bot.

    `saypro-bot run` configures the root logger at INFO first (bots/logs.py), so uvicorn writes
    an access line per request there; BENCH_BARE_ACCESS_LOG=1 (`--bare-access-log`) does the
    same here, to see what that costs.
    """
    import logging

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()

    @app.post("/bare")
    async def bare() -> Response:
        return Response(status_code=200)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(status_code=200)

    if os.environ.get("BENCH_BARE_ACCESS_LOG") == "1":
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().handlers[:] = [handler]
        logging.getLogger().setLevel("INFO")
    uvicorn.run(app, host=HOST, port=port, log_config=None)
