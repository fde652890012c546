"""`saypro-bot outbox`: the dead letters (rows the dispatcher gave up on), listed and sent again."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from bots import logs
from bots.startup import settings_or_exit

if TYPE_CHECKING:
    from core.storage.database import Database

outbox_app = typer.Typer(help="Replies that could not be sent.", no_args_is_help=True)
log = logging.getLogger("saypro")


@outbox_app.command("list")
def list_dead(
    channel: Annotated[str | None, typer.Option(help="Only this channel (sms, whatsapp, telegram...).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Dead-lettered replies, oldest first: id, channel, user (last digits), attempts, last error."""
    from core.deliveries import dead_letters

    logs.configure("WARNING")
    with _database() as database:
        rows = dead_letters(database, channel=channel, limit=limit)
    listed = [
        {
            "id": row.id,
            "channel": row.channel,
            "user": _masked(row.user_id),
            "attempts": row.attempts,
            "last_error": row.last_error,
            "created_at": row.created_at.isoformat(),
        }
        for row in rows
    ]
    if as_json:
        typer.echo(json.dumps({"dead": listed}))
        return
    if not listed:
        typer.echo("no dead-lettered replies")
    for row in listed:
        typer.echo(
            f"{row['id']:>8}  {row['channel']:<9} {row['user']:<10} tries {row['attempts']:<3} {row['last_error'] or ''}"
        )


@outbox_app.command("retry")
def retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Row ids (from `outbox list`); none: every dead row.")] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    send: Annotated[
        bool, typer.Option(help="Send them from this command now, instead of leaving them to `run` or `worker`.")
    ] = False,
) -> None:
    """Queue dead-lettered replies again with fresh attempts; the running dispatcher sends them."""
    from core.deliveries import requeue_dead

    logs.configure("WARNING")
    with _database() as database:
        queued = requeue_dead(database, ids=ids or (), channel=channel)
        typer.echo(f"{len(queued)} replies queued again")
        if send and queued:
            sent, left = asyncio.run(_send_now(database, queued))
            typer.echo(f"{sent} sent, {left} still waiting (the dispatcher keeps trying them)")


@contextmanager
def _database() -> Iterator[Database]:
    from core.storage.database import Database

    database = Database.from_url(settings_or_exit().database_url)
    try:
        database.upgrade()
        yield database
    finally:
        database.dispose()


async def _send_now(database: Database, item_ids: list[int]) -> tuple[int, int]:
    """Send the rows through the live channels (no knowledge base needed); how many went, how many wait."""
    from sqlalchemy import func, select

    from bots.plugins import load_plugins
    from core.channels import ChannelRegistry
    from core.outbox import Dispatcher
    from core.storage.models import OutboxItem

    plugins = load_plugins(settings_or_exit())
    registry = ChannelRegistry(tuple(channel for plugin in plugins for channel in plugin.channels))
    try:
        await Dispatcher(database, registry).dispatch(item_ids)
    finally:
        for plugin in plugins:
            for close in plugin.closers:
                await close()
    with database.sessions() as session:
        query = select(OutboxItem.status, func.count()).where(OutboxItem.id.in_(item_ids)).group_by(OutboxItem.status)
        counts: dict[str, int] = {status: count for status, count in session.execute(query)}
    return counts.get("sent", 0), counts.get("pending", 0)


def _masked(user_id: str) -> str:
    """A user id as an operator may see it in a terminal: a phone number or long id by its last four."""
    return user_id if len(user_id) <= 4 else "…" + user_id[-4:]
