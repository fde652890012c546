"""The web app built from the environment, for several uvicorn worker processes.

    uvicorn --factory bots.asgi:app_from_env --host 0.0.0.0 --port 8000 --workers 4

uvicorn calls the factory once in each worker process, so each builds its own services: its
own database pool, knowledge base, channel clients and background dispatcher. They share only
the database, where the work they have in common is claimed (docs/operations.md).
`saypro-bot run` stays the one-process way to start the same app.
"""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI

from bots import logs
from bots.settings import load_settings
from core.errors import ConfigurationError, KnowledgeBaseError

log = logging.getLogger("saypro")


def app_from_env() -> FastAPI:
    """Read the settings, build the services (migrating the database) and return the app."""
    from bots.web import create_app
    from bots.wiring import build, channel_report

    logs.configure()
    try:
        settings = load_settings()
        services = build(settings)
    except (ConfigurationError, KnowledgeBaseError) as exc:
        # The same one line `saypro-bot run` prints; uvicorn's worker then exits.
        print(f"saypro-bot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for status in channel_report(settings, services.plugins):
        log.info("channel %s: %s (%s)", status.name, "live" if status.live else "off", status.why)
    return create_app(services)
