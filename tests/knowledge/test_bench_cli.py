"""`saypro-bot knowledge bench` end to end on tiny files: one JSON object with the interface's keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bots.cli import app
from knowledge.scale import synthetic_entries

KEYS = {
    "n_train",
    "n_test",
    "accuracy",
    "oos_recall",
    "answered_precision",
    "ece",
    "fit_seconds",
    "latency_ms_p50",
    "latency_ms_p95",
}
TOPICS = {
    "card_arrival": [
        "where is my new card",
        "my card has not arrived",
        "card still not delivered",
        "when will the card come",
        "how long does card delivery take",
        "card never arrived",
    ],
    "lost_or_stolen_card": [
        "i lost my card",
        "my card was stolen",
        "someone took my card",
        "cannot find my card anywhere",
        "block my stolen card",
        "card missing from wallet",
    ],
    "top_up_failed": [
        "my top up failed",
        "top up did not go through",
        "why was my top-up declined",
        "top up error",
        "adding money failed",
        "cannot top up my account",
    ],
}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    rows = [(text, label) for label, texts in TOPICS.items() for text in texts[:5]]
    rows += [
        ("what is the weather", "oos"),
        ("tell me a joke", "oos"),
        ("who won the match", "oos"),
    ]
    train.write_text("text,category\n" + "".join(f"{t},{label}\n" for t, label in rows))
    held = [(texts[5], label) for label, texts in TOPICS.items()] + [("sing me a song", "oos")]
    test.write_text("text,category\n" + "".join(f"{t},{label}\n" for t, label in held))
    return train, test


@pytest.fixture(autouse=True)
def light_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KNOWLEDGE_EMBEDDINGS", raising=False)


def run(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["knowledge", "bench", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # exactly one JSON object: anything else on stdout fails here


def test_bench_prints_one_json_object_with_the_interface_keys(
    files: tuple[Path, Path],
) -> None:
    train, test = files
    result = run("--train", str(train), "--test", str(test), "--oos-label", "oos", "--json")
    assert set(result) == KEYS
    assert (result["n_train"], result["n_test"]) == (18, 4)
    assert result["oos_recall"] in (0.0, 1.0)
    for key in ("accuracy", "ece"):
        assert 0.0 <= result[key] <= 1.0  # type: ignore[operator]
    assert 0.0 < result["latency_ms_p50"] <= result["latency_ms_p95"]  # type: ignore[operator]
    assert result["fit_seconds"] > 0.0  # type: ignore[operator]


def test_bench_keeps_the_first_shots_and_has_no_oos_recall_without_an_oos_label(
    files: tuple[Path, Path],
) -> None:
    train, test = files
    result = run("--train", str(train), "--test", str(test), "--shots", "2", "--json")
    assert result["n_train"] == 2 * 4  # "oos" is an ordinary label without --oos-label
    assert result["oos_recall"] is None


def test_bench_without_json_prints_a_summary(files: tuple[Path, Path]) -> None:
    train, test = files
    result = CliRunner().invoke(app, ["knowledge", "bench", "--train", str(train), "--test", str(test)])
    assert result.exit_code == 0, result.output
    assert "accuracy:" in result.stdout and "latency p50 / p95:" in result.stdout


def test_bench_refuses_missing_or_broken_files(tmp_path: Path, files: tuple[Path, Path]) -> None:
    train, _ = files
    missing = CliRunner().invoke(app, ["knowledge", "bench", "--train", str(train)])
    assert missing.exit_code == 2 and "--test" in missing.output
    broken = tmp_path / "broken.csv"
    broken.write_text("question,a,b\nhi,1,2\n")
    refused = CliRunner().invoke(app, ["knowledge", "bench", "--train", str(broken), "--test", str(broken)])
    assert refused.exit_code == 2 and "no 'text' column" in refused.output


def test_bench_on_synthetic_entries() -> None:
    result = run("--synthetic-entries", "20", "--json")
    assert set(result) == KEYS and result["n_train"] == 20 * 8 + 4


def test_synthetic_entries_are_labelled_rows_with_out_of_scope_ones() -> None:
    train, test = synthetic_entries(50, examples=6, tests=2)
    assert len({row.label for row in train if row.label}) == 50
    assert len(train) == 50 * 6 + 4 and len(test) == 50 * 2 + 4
    assert any(not row.label for row in test)
    assert synthetic_entries(50, examples=6, tests=2) == (train, test)  # deterministic


def test_bench_shows_progress_on_a_terminal_and_keeps_stdout_clean(
    files: tuple[Path, Path],
) -> None:
    train, test = files
    args = ["knowledge", "bench", "--train", str(train), "--test", str(test), "--json"]
    on_terminal = CliRunner().invoke(app, args, env={"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"})
    assert on_terminal.exit_code == 0, on_terminal.output
    assert "scoring" in on_terminal.stderr and "fitting" in on_terminal.stderr
    assert set(json.loads(on_terminal.stdout)) == KEYS
    piped = CliRunner().invoke(app, args, env={"TTY_COMPATIBLE": "0", "TTY_INTERACTIVE": "0"})
    assert piped.exit_code == 0 and piped.stderr == ""
