"""`saypro-bot knowledge ...`: check the knowledge base and measure the matcher."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bots import logs
from bots.startup import fail, knowledge_or_exit, settings_or_exit
from core.errors import ConfigurationError

if TYPE_CHECKING:
    from knowledge.evaluation import LabelledRow, Progress

knowledge_app = typer.Typer(help="Check and measure the FAQ matcher.", no_args_is_help=True)


@knowledge_app.command("eval")
def knowledge_eval(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="CSV with columns text,topic."),
    ],
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
    try:
        result = evaluate(knowledge, rows)
    except ConfigurationError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"questions:            {result['n']}")
    typer.echo(f"accuracy (in scope):  {_percent(result['accuracy'])}")
    typer.echo(f"out-of-scope recall:  {_percent(result['oos_recall'])}")
    typer.echo(f"answered precision:   {_percent(result['answered_precision'])}")


@knowledge_app.command("bench")
def knowledge_bench(
    train: Annotated[
        Path | None,
        typer.Option("--train", help="Training CSV: text and one label column."),
    ] = None,
    test: Annotated[Path | None, typer.Option("--test", help="Test CSV, never learnt from.")] = None,
    shots: Annotated[
        int | None,
        typer.Option("--shots", min=1, help="Keep the first N rows of each label."),
    ] = None,
    oos_label: Annotated[
        str | None,
        typer.Option(
            "--oos-label",
            help="The label of out-of-scope rows (an empty label always is).",
        ),
    ] = None,
    synthetic_entries: Annotated[
        int | None,
        typer.Option(
            "--synthetic-entries",
            min=2,
            help="Instead of files: N made-up FAQ entries.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Fit the bot's matcher on a labelled CSV and score it on another: accuracy, calibration, fit time, latency."""
    from knowledge.embeddings import embedder_for
    from knowledge.evaluation import bench
    from knowledge.scale import synthetic_entries as synthesise

    logs.configure("WARNING")
    settings = settings_or_exit()
    if synthetic_entries is not None:
        train_rows, test_rows = synthesise(synthetic_entries)
    elif train is None or test is None:
        fail("give --train and --test (or --synthetic-entries N)")
    else:
        train_rows, test_rows = _rows_or_exit(train), _rows_or_exit(test)
    if not train_rows:
        fail(f"{train}: no rows to learn from")
    embedder = embedder_for(settings.knowledge_embeddings)
    with _progress_bar() as progress:
        try:
            result = bench(
                train_rows,
                test_rows,
                shots=shots,
                oos_label=oos_label,
                embedder=embedder,
                progress=progress,
            )
        except ConfigurationError as exc:
            fail(str(exc))
        except ValueError as exc:
            fail(f"cannot fit the matcher: {exc}")
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"training rows:        {result['n_train']}")
    typer.echo(f"test rows:            {result['n_test']}")
    typer.echo(f"accuracy:             {_percent(result['accuracy'])}")
    typer.echo(f"out-of-scope recall:  {_percent(result['oos_recall'])}")
    typer.echo(f"answered precision:   {_percent(result['answered_precision'])}")
    typer.echo(f"calibration error:    {_number(result['ece'], '.3f')}")
    typer.echo(f"fit:                  {_number(result['fit_seconds'], '.1f')} s")
    typer.echo(
        f"latency p50 / p95:    {_number(result['latency_ms_p50'], '.2f')} / "
        f"{_number(result['latency_ms_p95'], '.2f')} ms"
    )


def _rows_or_exit(path: Path) -> list[LabelledRow]:
    from knowledge.evaluation import read_labelled_csv

    if not path.is_file():
        fail(f"{path}: no such file")
    try:
        return read_labelled_csv(path)
    except (ValueError, KeyError) as exc:
        fail(f"{path}: {exc}")


@contextmanager
def _progress_bar() -> Iterator[Progress | None]:
    """A rich progress bar on stderr while fitting and scoring, only when stderr is a terminal."""
    from rich import progress as bars
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    columns = (
        bars.SpinnerColumn(),
        bars.TextColumn("{task.description}"),
        bars.BarColumn(),
        bars.MofNCompleteColumn(),
        bars.TimeElapsedColumn(),
    )
    with bars.Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                for other in tasks.values():
                    bar.update(
                        other,
                        completed=bar.tasks[other].total or 1,
                        total=bar.tasks[other].total or 1,
                    )
                tasks[phase] = bar.add_task("fitting" if phase == "fit" else "scoring", total=total)
            bar.update(tasks[phase], completed=done)

        yield report


def _percent(value: object) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.1%}"


def _number(value: object, spec: str) -> str:
    return "n/a" if not isinstance(value, (int, float)) else format(value, spec)
