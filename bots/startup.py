"""What every command does first: read the settings and build its services, or stop with one line."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer

from bots.settings import Settings, load_settings
from core.errors import ConfigurationError, KnowledgeBaseError

if TYPE_CHECKING:
    from bots.wiring import Services
    from knowledge.service import KnowledgeService


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `saypro-bot: message` on stderr and exit with `code`."""
    typer.echo(f"saypro-bot: {message}", err=True)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        fail(str(exc))


def services_or_exit(settings: Settings, **kwargs: object) -> Services:
    from bots.wiring import (
        build,  # the knowledge base and SDKs load only for commands that need them
    )

    try:
        return build(settings, **kwargs)  # type: ignore[arg-type]
    except (ConfigurationError, KnowledgeBaseError) as exc:
        fail(str(exc))


def knowledge_or_exit(settings: Settings) -> KnowledgeService:
    from knowledge.service import KnowledgeService

    try:
        return KnowledgeService.load(settings.knowledge_dir, embeddings=settings.knowledge_embeddings)
    except (KnowledgeBaseError, ConfigurationError) as exc:
        fail(str(exc))
