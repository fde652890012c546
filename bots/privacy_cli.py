"""`saypro-bot forget CONTACT` and `saypro-bot purge`: a person's erasure, and the retention period (POPIA)."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from dataclasses import asdict
from typing import Annotated, Any

import typer

from bots import logs
from bots.settings import Settings
from bots.startup import fail, settings_or_exit
from core.privacy import ContactQuery, purge_forever
from core.privacy import forget as forget_contact
from core.privacy import purge as purge_messages
from core.storage.database import Database


def forget(
    contact: Annotated[
        str,
        typer.Argument(
            help="channel:user_id (e.g. telegram:5550001, whatsapp:+27825550142), a phone number or an e-mail."
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be erased; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Erase a person's messages, identities and verification trail; keep their tickets, anonymous."""
    logs.configure("WARNING")
    settings = settings_or_exit()
    logs.add_secrets(settings)
    try:
        query = ContactQuery.parse(contact)
    except ValueError as exc:
        fail(str(exc))
    database = _database(settings.database_url)
    try:
        result = forget_contact(database, query, dry_run=dry_run)
    finally:
        database.dispose()
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, **asdict(result)}))
        return
    if result.identities == 0:
        typer.echo("Nobody with that contact is known to the bot: nothing to erase.")
    else:
        verb = "Would erase" if dry_run else "Erased"
        typer.echo(
            f"{verb} {result.identities} channel identities, {result.messages} messages, {result.outbox} outbox rows, "
            f"{result.identity_links} proven phones or e-mails and {result.verification} verification records; "
            f"{result.conversations} conversations and {result.tickets} tickets kept without personal data."
        )
        for table, count in sorted(result.other_rows.items()):
            typer.echo(f"  also {count} rows of {table}")
    if result.records_kept:
        typer.echo(
            f"{result.records_kept} platform records (campaigns, contributions, entries) still name this person: "
            "they are the platform's, so erase them there; its next update replaces them here."
        )


def purge(
    days: Annotated[
        int | None,
        typer.Option("--days", min=1, help="Erase messages older than this; default MESSAGE_RETENTION_DAYS."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Erase messages (and their outbox rows and verification records) older than the retention period."""
    logs.configure("WARNING")
    settings = settings_or_exit()
    logs.add_secrets(settings)
    days = days or settings.message_retention_days
    if not days:
        fail("give --days N, or set MESSAGE_RETENTION_DAYS")
    database = _database(settings.database_url)
    try:
        result = purge_messages(database, days=days)
    finally:
        database.dispose()
    if as_json:
        typer.echo(json.dumps({"days": days, **asdict(result)}))
        return
    typer.echo(
        f"Erased {result.messages} messages older than {days} days, {result.outbox} outbox rows "
        f"and {result.verification} verification records."
    )


def _database(url: str) -> Database:
    database = Database.from_url(url)
    database.upgrade()
    return database


def retention_loops(settings: Settings, database: Database) -> list[Coroutine[Any, Any, None]]:
    """The periodic purge for `run` and `worker`: one loop when MESSAGE_RETENTION_DAYS is set, else none."""
    days = settings.message_retention_days
    return [purge_forever(database, days=days)] if days else []
