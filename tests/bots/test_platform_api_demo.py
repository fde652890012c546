"""The demo set: loaded idempotently through the PUT routes' path, and the whole flow in `saypro-bot chat`."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import func, select

from bots.chat import chat
from bots.demo import DEMO_REFERENCES, DemoCodeRoute, load_demo
from bots.settings import load_settings
from bots.wiring import Services, build
from core.records import Owner
from core.storage.models import Message, Ticket
from core.storage.records import StatusNotification
from tests.fakes.knowledge import FakeKnowledge

COMMAND = str(Path(sys.executable).parent / "saypro-bot")


@pytest.fixture()
def services(database_url: str) -> Iterator[Services]:
    built = build(load_settings(database_url=database_url), knowledge=FakeKnowledge())
    yield built
    built.database.dispose()


def test_the_demo_set_loads_once_and_again_changes_nothing(services: Services) -> None:
    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    assert {r.result for r in load_demo(services, now=now)} == {"created"}
    assert {r.result for r in load_demo(services, now=now + timedelta(hours=5))} == {"unchanged"}
    next_day = load_demo(services, now=now + timedelta(days=1))  # re-dated, but no status changes
    assert {r.result for r in next_day} == {"updated"} and all(not r.changes for r in next_day)
    assert {r.reference for r in next_day} == DEMO_REFERENCES
    with services.database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(StatusNotification)) == 0


def test_demo_codes_show_only_in_the_terminal_and_only_for_demo_records() -> None:
    route = DemoCodeRoute()
    assert route.claims(reference="SP-PAY-DEMO1", channel="console")
    assert not route.claims(reference="SP-PAY-DEMO1", channel="whatsapp")
    assert not route.claims(reference="SP-PAY-1042", channel="console")
    assert route.deliver(None, owner=Owner("T", None, "+27825550142"), code="123456", asker=None) is None  # type: ignore[arg-type]


class ScriptedConsole(Console):
    """A terminal that types the given lines; `{code}` types the last code shown on screen."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(file=io.StringIO(), width=200, record=True, color_system=None)
        self.lines = lines

    def input(self, prompt: Any = "", **_kwargs: Any) -> str:  # type: ignore[override]
        if not self.lines:
            raise EOFError
        line = self.lines.pop(0)
        if line == "{code}":
            line = re.findall(r"verification code is (\d{6})", self.export_text(clear=False))[-1]
        self.print(f"You › {line}")
        return line


def test_the_demo_flow_works_in_chat(services: Services) -> None:
    load_demo(services)
    console = ScriptedConsole(["where is my payout?", "SP-PAY-DEMO1", "{code}", "where is my payout?", "2", "/quit"])
    chat(services, user_id="newcomer", console=console)
    screen = console.export_text()
    assert "Please send me the reference of the payout" in screen
    assert "If this reference is yours, a code is on its way to the phone or email on its record" in screen
    assert "DEMO ONLY: this panel stands in for the inbox of t•••@example.org" in screen
    assert "Thanks, that's the right code." in screen
    assert "R4,750.00 (R5,000.00 minus R250.00 fees), by bank transfer" in screen
    # Verified once by e-mail, Thandi's other payout needs no code: she picks it from a list.
    assert "Which one do you mean?" in screen and "SP-PAY-DEMO2 · Books for Soweto Readers" in screen
    assert "The payment failed: the bank rejected the account number" in screen
    with services.database.sessions() as session:
        assert [t.priority for t in session.scalars(select(Ticket))] == ["high"]
        stored = " ".join(m.text for m in session.scalars(select(Message)))
    shown = re.findall(r"verification code is (\d{6})", screen)
    assert shown and shown[0] not in stored  # the demo code was shown, not kept


def test_saypro_bot_chat_demo_on_a_fresh_machine(tmp_path: Path) -> None:
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    result = subprocess.run(
        [COMMAND, "chat", "--demo"],
        cwd=tmp_path,
        env={**env, "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": "200"},
        input="where is my payout?\nSP-PAY-DEMO1\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Demo data loaded" in result.stdout and "DEMO ONLY" in result.stdout
    assert re.search(r"verification code is \d{6}", result.stdout)


def test_saypro_bot_run_demo_serves_the_demo_records(tmp_path: Path) -> None:
    import socket
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env |= {"NO_PROXY": "127.0.0.1,localhost", "SAYPRO_API_KEY": "demo-key"}
    process = subprocess.Popen(
        [COMMAND, "run", "--demo", "--port", str(port)], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer demo-key"}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        reply = httpx.post(
            f"{base}/api/v1/messages", json={"user": "u", "text": "status of SP-PAY-DEMO1"}, headers=auth
        )
        # Over the API (not the terminal), a demo record is treated like any other: no code shown.
        assert "a code is on its way" not in reply.text and "can't send you a verification code" in reply.text
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=30)
    assert "demo records loaded: 8, 8 new or changed" in err
