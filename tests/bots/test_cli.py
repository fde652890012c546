"""The installed `saypro-bot` command, run as an operator would on a fresh machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

COMMAND = str(Path(sys.executable).parent / "saypro-bot")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine with no configuration at all, in an empty directory."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def saypro(*args: str, cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def running(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [COMMAND, "run", "--port", str(port)], cwd=tmp_path, env=clean_env, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            pytest.fail("saypro-bot run did not answer /healthz within 90 s")
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()


def test_run_with_no_configuration_serves_health_and_creates_the_database(running, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, process = running
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert (tmp_path / "saypro.db").exists()
    assert "saypro_messages_received_total" in httpx.get(f"{base}/metrics").text
    assert httpx.post(f"{base}/api/v1/messages", json={"user": "u", "text": "hi"}).status_code == 503
    process.terminate()
    _out, err = process.communicate(timeout=30)
    assert "channel telegram: off (TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET not set)" in err
    assert "channel api: live" in err


def test_chat_answers_the_payout_timeline_question(tmp_path: Path, clean_env: dict[str, str]) -> None:
    result = saypro(
        "chat", cwd=tmp_path, env=clean_env, stdin="how long until my campaign funds are paid out?\n/quit\n"
    )
    assert result.returncode == 0, result.stderr
    assert "Your funds are paid out once" in result.stdout
    assert "Conversation saved" in result.stdout


def test_chat_ends_cleanly_at_the_end_of_input(tmp_path: Path, clean_env: dict[str, str]) -> None:
    result = saypro("chat", "--as", "thandi", cwd=tmp_path, env=clean_env, stdin="hi\n")
    assert result.returncode == 0, result.stderr
    assert "support assistant" in result.stdout and "thandi" in result.stdout


def test_ask_json_refuses_the_weather(tmp_path: Path, clean_env: dict[str, str]) -> None:
    result = saypro("ask", "what's the weather", "--json", cwd=tmp_path, env=clean_env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)  # one JSON object and nothing else on stdout
    assert payload["topic"] is None and payload["answer"] is None
    assert set(payload) == {"topic", "confidence", "answer", "alternatives"}


def test_ask_json_answers_a_refund_question(tmp_path: Path, clean_env: dict[str, str]) -> None:
    result = saypro(
        "ask", "how do i get my money back from a cancelled campaign", "--json", cwd=tmp_path, env=clean_env
    )
    payload = json.loads(result.stdout)
    assert payload["topic"] == "refund-request" and 0 < payload["confidence"] <= 1
    assert all(set(alt) == {"topic", "confidence"} for alt in payload["alternatives"])


def test_knowledge_eval_json_prints_the_interface_keys(tmp_path: Path, clean_env: dict[str, str]) -> None:
    csv = tmp_path / "few.csv"
    csv.write_text("text,topic\nwhen do i get paid out for my campaign,disbursement-timeline\ntell me a joke,\n")
    result = saypro("knowledge", "eval", str(csv), "--json", cwd=tmp_path, env=clean_env)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"n", "accuracy", "oos_recall", "answered_precision"}


def test_a_broken_knowledge_file_stops_start_up_naming_the_file(tmp_path: Path, clean_env: dict[str, str]) -> None:
    import shutil

    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "knowledge", kb, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (kb / "faq" / "prizes.md").write_text("---\nid: prizes\ntitle: [unclosed\n---\nAnswer\n")
    result = saypro("ask", "prizes", cwd=tmp_path, env={**clean_env, "KNOWLEDGE_DIR": str(kb)})
    assert result.returncode == 2
    assert "prizes.md:" in result.stderr and "Traceback" not in result.stderr


def test_a_malformed_setting_stops_start_up_in_one_line(tmp_path: Path, clean_env: dict[str, str]) -> None:
    result = saypro("run", cwd=tmp_path, env={**clean_env, "DATABASE_URL": "not-a-url"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "saypro-bot: DATABASE_URL: not a SQLAlchemy database URL, e.g. sqlite:///./saypro.db"
    ]


def test_webhooks_register_with_no_live_channel_says_what_to_do(tmp_path: Path, clean_env: dict[str, str]) -> None:
    result = saypro("webhooks", "register", cwd=tmp_path, env=clean_env)
    assert result.returncode == 2 and "no channel is live" in result.stderr


def test_report_counts_the_conversations_had(tmp_path: Path, clean_env: dict[str, str]) -> None:
    saypro("chat", cwd=tmp_path, env=clean_env, stdin="when is my payout\nagent\n")
    result = saypro("report", "--json", cwd=tmp_path, env=clean_env)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["volume"]["console"]["messages_in"] == 2 and figures["tickets"] == {"open": 1}
    assert figures["delivery"]["console"]["sent"] >= 2
    table = saypro("report", cwd=tmp_path, env=clean_env)
    assert "console" in table.stdout and "Bot containment: 0.0% of 1 conversations" in table.stdout
