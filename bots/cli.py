"""The `saypro-bot` command line: run, worker, chat, ask, knowledge, webhooks, db, report, outbox, forget, purge."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Annotated

import typer

from bots import logs
from bots.knowledge_cli import knowledge_app
from bots.outbox_cli import outbox_app
from bots.privacy_cli import forget, purge
from bots.startup import fail, knowledge_or_exit, services_or_exit, settings_or_exit

app = typer.Typer(help="SayPro's customer-support bot.", no_args_is_help=True, add_completion=False)
webhooks_app = typer.Typer(help="Provider webhooks.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
app.add_typer(knowledge_app, name="knowledge")  # bots/knowledge_cli.py
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox")  # bots/outbox_cli.py
app.command()(forget)  # bots/privacy_cli.py
app.command()(purge)
log = logging.getLogger("saypro")


@app.command()
def run(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Load demo campaigns, payouts and contest entries.")] = False,
    telegram_polling: Annotated[
        bool, typer.Option(help="Fetch Telegram updates by polling instead of the webhook (local use).")
    ] = False,
) -> None:
    """The web app (webhooks, platform API, health, metrics) and the dispatcher, in one process."""
    import uvicorn

    from bots.web import create_app
    from bots.wiring import channel_report

    logs.configure()
    settings = settings_or_exit()
    if telegram_polling:
        settings = settings.model_copy(update={"telegram_polling": True})
    services = services_or_exit(settings)
    for status in channel_report(settings, services.plugins):
        log.info("channel %s: %s (%s)", status.name, "live" if status.live else "off", status.why)
    if demo:
        _load_demo(services)
    uvicorn.run(create_app(services), host=host, port=port, log_config=None)


@app.command()
def worker() -> None:
    """The dispatcher, the pollers and the desk's loop (SLA timers, weekly report), for a second process beside `run`.

    With ANSWERS_BY_WORKERS it also answers the messages the web processes store."""
    from bots.privacy_cli import retention_loops
    from bots.wiring import knowledge_watchers
    from bots.worker import answer_waiting, run_forever

    logs.configure()
    services = services_or_exit(settings_or_exit())
    log.info("worker started")

    async def everything() -> None:
        pollers = [poller(services) for plugin in services.plugins for poller in plugin.pollers]
        watchers = knowledge_watchers(services)  # bots/wiring.py: hot reload of the knowledge base
        watchers += retention_loops(services.settings, services.database)  # bots/privacy_cli.py
        if services.settings.answers_by_workers:
            watchers.append(answer_waiting(services.inbox, services.answerer))
        await asyncio.gather(run_forever(services.inbox, services.dispatcher), *pollers, *watchers)

    try:
        asyncio.run(everything())
    except KeyboardInterrupt:
        log.info("worker stopped")


@app.command()
def chat(
    as_: Annotated[str, typer.Option("--as", help="Your user id on the console channel.")] = "local",
    demo: Annotated[bool, typer.Option(help="Load the demo campaigns, payouts and contest entries first.")] = False,
) -> None:
    """Talk to the bot in the terminal."""
    from bots.chat import chat as run_chat

    logs.configure("WARNING")
    services = services_or_exit(settings_or_exit())
    if demo:
        _load_demo(services)
        typer.echo("Demo data loaded. Try: where is my payout? then SP-PAY-DEMO1 (more in docs/status.md).")
    run_chat(services, user_id=as_)


def _load_demo(services) -> None:  # type: ignore[no-untyped-def]
    from bots.demo import load_demo

    results = load_demo(services)
    changed = sum(1 for result in results if result.result != "unchanged")
    log.info("demo records loaded: %d, %d new or changed (references in docs/status.md)", len(results), changed)


@app.command()
def ask(text: str, as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """One question through the FAQ matcher."""
    from bots.answers import ask_payload

    logs.configure("WARNING")
    knowledge = knowledge_or_exit(settings_or_exit())
    payload = ask_payload(knowledge, text)
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    if payload["topic"] is None:
        typer.echo(f"No answer (best guess confidence {payload['confidence']:.2f}).")
    else:
        typer.echo(f"[{payload['topic']}] confidence {payload['confidence']:.2f}\n\n{payload['answer']}")
    for alternative in payload["alternatives"]:
        typer.echo(f"  also: {alternative['topic']} ({alternative['confidence']:.2f})")


@webhooks_app.command("register")
def webhooks_register() -> None:
    """Set Telegram's webhook, and print the URLs to enter at Twilio, Slack and X, under PUBLIC_BASE_URL."""
    from bots.plugins import load_plugins

    logs.configure("WARNING")
    settings = settings_or_exit()
    registrars = [plugin.register_webhooks for plugin in load_plugins(settings) if plugin.register_webhooks]
    if not registrars:
        fail("no channel is live: set a channel's credentials first (see the README)")

    async def register_all() -> list[str]:
        return [line for registrar in registrars for line in await registrar(settings)]

    for line in asyncio.run(register_all()):
        typer.echo(line)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Run the database migrations to head."""
    from core.storage.database import Database

    logs.configure()
    settings = settings_or_exit()
    Database.from_url(settings.database_url).upgrade()
    typer.echo("database is at the latest migration")


@app.command()
def report(
    days: Annotated[int, typer.Option(min=1, help="How many days back.")] = 7,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Support figures for the last N days: volume and tickets by channel, bot containment, first-response
    and resolution times, first-contact resolution, SLA breaches, CSAT, top FAQ topics and unanswered questions."""
    from core.reporting import support_report
    from core.storage.database import Database

    logs.configure("WARNING")
    database = Database.from_url(settings_or_exit().database_url)
    database.upgrade()
    figures = support_report(database, days=days)
    if as_json:
        typer.echo(json.dumps(figures))
        return
    from bots.report_view import print_report

    print_report(figures, days=days)


def main() -> None:
    app(prog_name="saypro-bot")


if __name__ == "__main__":
    sys.exit(main())
