"""`saypro-bot knowledge ...`: check the knowledge base and measure the matcher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bots import logs
from bots.startup import fail, knowledge_or_exit, settings_or_exit

knowledge_app = typer.Typer(help="Check and measure the FAQ matcher.", no_args_is_help=True)


@knowledge_app.command("eval")
def knowledge_eval(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV with columns text,topic.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Score the bundled knowledge base on labelled questions (empty topic = out of scope)."""
    from knowledge.evaluation import evaluate, read_labelled_csv

    logs.configure("WARNING")
    knowledge = knowledge_or_exit(settings_or_exit())
    try:
        rows = read_labelled_csv(file, label_column="topic")
    except (ValueError, KeyError) as exc:
        fail(f"{file}: {exc}")
    result = evaluate(knowledge, rows)
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"questions:            {result['n']}")
    typer.echo(f"accuracy (in scope):  {_percent(result['accuracy'])}")
    typer.echo(f"out-of-scope recall:  {_percent(result['oos_recall'])}")
    typer.echo(f"answered precision:   {_percent(result['answered_precision'])}")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
