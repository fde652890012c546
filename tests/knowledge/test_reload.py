"""Hot reload: a changed knowledge folder is re-fitted while the old model answers; a broken one is not."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.errors import KnowledgeBaseError
from core.faq import Decision
from knowledge.matcher import Matcher
from knowledge.reload import ReloadingKnowledgeService

FIXTURE = Path(__file__).parent / "fixtures" / "kb"
NEW_ENTRY = """---
id: shipping-times
title: How long does shipping take?
audience: [backer]
examples:
  - when will my parcel be shipped
  - how long does shipping take
  - my parcel has not been delivered
  - shipping to cape town how many days
  - tracking number for my parcel
---
Parcels ship within a week.
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "kb"))


def test_an_edit_is_picked_up_by_a_reload(folder: Path) -> None:
    service = ReloadingKnowledgeService.load(folder)
    before = service.current
    assert service.lookup("when will my parcel be shipped").topic != "shipping-times"
    assert not service.changed() and service.reload() is False  # nothing changed: the same model
    (folder / "faq" / "shipping-times.md").write_text(NEW_ENTRY)
    assert service.changed()
    assert service.reload() is True
    assert service.current is not before
    result = service.lookup("how long does shipping take to my town")
    assert (result.decision, result.topic) == (Decision.ANSWER, "shipping-times")
    assert "shipping-times" in {c.topic for c in service.topics("backer")}
    assert service.answer_for("shipping-times").answer == "Parcels ship within a week."


def test_a_broken_file_keeps_the_last_good_model_and_logs_why(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    service = ReloadingKnowledgeService.load(folder)
    good = service.current
    (folder / "faq" / "shipping-times.md").write_text(NEW_ENTRY.replace("id: shipping-times", "id: Bad Id"))
    with caplog.at_level(logging.ERROR, logger="saypro.knowledge"):
        assert service.reload() is False
    assert service.current is good
    assert service.last_error is not None and "shipping-times.md" in service.last_error
    assert any("last good one keeps answering" in r.getMessage() for r in caplog.records)
    assert service.lookup("refund pls").topic == "refund-request"  # still answering from the old model
    assert not service.changed()  # the broken state is not retried until the files change again
    (folder / "faq" / "shipping-times.md").write_text(NEW_ENTRY)
    assert service.reload() is True and service.last_error is None


def test_a_fit_that_fails_keeps_the_last_good_model(
    folder: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = ReloadingKnowledgeService.load(folder)
    good = service.current

    def failing(*args: object, **kwargs: object) -> None:
        raise RuntimeError("not enough memory to tune the model")

    monkeypatch.setattr(Matcher, "fit", failing)
    (folder / "faq" / "shipping-times.md").write_text(NEW_ENTRY)
    with caplog.at_level(logging.ERROR, logger="saypro.knowledge"):
        assert service.reload() is False
    assert service.current is good and "not enough memory" in (service.last_error or "")
    assert "last good one keeps answering" in caplog.text
    assert service.lookup("how can i recover my login").topic == "password-reset"


def test_a_broken_folder_at_start_up_raises(folder: Path) -> None:
    (folder / "facts.yaml").write_text("a: [unclosed\n")
    with pytest.raises(KnowledgeBaseError, match="facts.yaml"):
        ReloadingKnowledgeService.load(folder)


async def wait_for_swap(service: ReloadingKnowledgeService, old: object) -> None:
    for _ in range(400):  # answers keep coming while the new model is fitted in a thread
        assert service.lookup("refund pls").decision is Decision.ANSWER
        if service.current is not old:
            return
        await asyncio.sleep(0.025)


async def stop(watcher: asyncio.Task[None]) -> None:
    watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watcher


async def test_watch_reloads_a_changed_folder_while_answering(folder: Path) -> None:
    service = ReloadingKnowledgeService.load(folder)
    first = service.current
    watcher = asyncio.create_task(service.watch(interval=0.05))
    try:
        (folder / "faq" / "shipping-times.md").write_text(NEW_ENTRY)
        await wait_for_swap(service, first)
        assert service.answer_for("shipping-times").answer == "Parcels ship within a week."
    finally:
        await stop(watcher)


async def test_watch_goes_on_after_an_unforeseen_failure(
    folder: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = ReloadingKnowledgeService.load(folder)
    first = service.current
    failures: list[str] = []

    def failing(*args: object, **kwargs: object) -> None:
        failures.append("fit")
        raise KeyError("something nobody foresaw")

    monkeypatch.setattr(Matcher, "fit", failing)
    watcher = asyncio.create_task(service.watch(interval=0.05))
    try:
        with caplog.at_level(logging.ERROR, logger="saypro.knowledge"):
            (folder / "faq" / "shipping-times.md").write_text(NEW_ENTRY)
            for _ in range(200):
                if failures:
                    break
                await asyncio.sleep(0.025)
            await asyncio.sleep(0.2)
        assert failures and service.current is first and not watcher.done()
        assert "last good one keeps answering" in caplog.text
        monkeypatch.undo()
        (folder / "faq" / "shipping-times.md").write_text(NEW_ENTRY.replace("within a week", "within five days"))
        await wait_for_swap(service, first)
        assert service.answer_for("shipping-times").answer == "Parcels ship within five days."
    finally:
        await stop(watcher)


async def test_sighup_reloads_at_once(folder: Path) -> None:
    service = ReloadingKnowledgeService.load(folder)
    first = service.current
    previous = signal.getsignal(signal.SIGHUP)
    watcher = asyncio.create_task(service.watch(interval=3600.0))  # the poll never comes in this test
    try:
        await asyncio.sleep(0)  # let the watcher start and listen for SIGHUP
        (folder / "faq" / "shipping-times.md").write_text(NEW_ENTRY)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for_swap(service, first)
        assert service.answer_for("shipping-times").answer == "Parcels ship within a week."
    finally:
        await stop(watcher)
        signal.signal(signal.SIGHUP, previous)


def test_the_processes_watch_the_bundled_knowledge_base_and_not_a_fixed_one(
    folder: Path,
) -> None:
    from bots.wiring import knowledge_watchers

    reloading = SimpleNamespace(knowledge=ReloadingKnowledgeService.load(folder))
    watchers = knowledge_watchers(reloading)  # type: ignore[arg-type]
    assert len(watchers) == 1
    watchers[0].close()  # a coroutine never started
    fixed = SimpleNamespace(knowledge=reloading.knowledge.current)
    assert knowledge_watchers(fixed) == []  # type: ignore[arg-type]
