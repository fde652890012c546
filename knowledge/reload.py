"""A knowledge service that re-fits itself when the FAQ files change, answering with the old model meanwhile."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from core.errors import ConfigurationError, KnowledgeBaseError
from core.faq import Candidate, FaqResult
from knowledge.embeddings import Embedder, embedder_for
from knowledge.loader import BUNDLED_KNOWLEDGE_DIR, FaqEntry, load_knowledge_base
from knowledge.matcher import Matcher
from knowledge.service import KnowledgeService

log = logging.getLogger("saypro.knowledge")


class ReloadingKnowledgeService:
    """Answers like KnowledgeService; `reload` fits a new one from the folder and swaps it in when it is ready.

    The swap is one attribute assignment, so a lookup sees either the old model or the new one,
    never half of each. A folder that fails to load or fit (a broken file) is logged and the last
    good model keeps answering. `watch(interval)` polls the files; `request_reload` (for SIGHUP)
    makes the watcher reload at once.
    """

    def __init__(
        self,
        service: KnowledgeService,
        *,
        root: str | Path | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self._service = service
        self.root = Path(root) if root is not None else BUNDLED_KNOWLEDGE_DIR
        self.embedder = embedder
        self.last_error: str | None = None
        self._fingerprint = _fingerprint(self.root)
        self._lock = threading.Lock()  # one reload at a time
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def load(cls, root: str | Path | None = None, *, embeddings: str | None = None) -> ReloadingKnowledgeService:
        """Load and fit the folder once (errors raise, as at start-up), ready to reload later."""
        embedder = embedder_for(embeddings)
        service = KnowledgeService.load(root, matcher=Matcher(embedder=embedder))
        return cls(service, root=root, embedder=embedder)

    @property
    def current(self) -> KnowledgeService:
        """The service answering now."""
        return self._service

    def lookup(self, text: str) -> FaqResult:
        return self._service.lookup(text)

    def answer_for(self, topic: str) -> FaqResult:
        return self._service.answer_for(topic)

    def topics(self, audience: str | None = None) -> list[Candidate]:
        return self._service.topics(audience)

    def entry(self, topic: str) -> FaqEntry | None:
        return self._service.entry(topic)

    def changed(self) -> bool:
        """Whether any file of the folder was added, removed or modified since the last (attempted) load."""
        return _fingerprint(self.root) != self._fingerprint

    def reload(self) -> bool:
        """Load and fit the folder now; True when a new model was swapped in.

        Unchanged content keeps the model; a broken folder keeps it too, and the error is logged.
        """
        with self._lock:
            self._fingerprint = _fingerprint(self.root)
            try:
                knowledge_base = load_knowledge_base(self.root)
                if knowledge_base.content_hash == self._service.knowledge_base.content_hash:
                    self.last_error = None
                    return False
                fresh = KnowledgeService.from_knowledge_base(knowledge_base, matcher=Matcher(embedder=self.embedder))
            # RuntimeError and MemoryError: the fit itself failed (a sentence model's tuning, say)
            except (KnowledgeBaseError, ConfigurationError, ValueError, RuntimeError, MemoryError) as exc:
                self.last_error = str(exc)
                log.error(
                    "knowledge base not reloaded, the last good one keeps answering: %s",
                    exc,
                )
                return False
            self._service = fresh
            self.last_error = None
            log.info("knowledge base reloaded: %d entries", len(knowledge_base.entries))
            return True

    def request_reload(self) -> None:
        """Ask the running `watch` to reload at once; safe from a signal handler or another thread."""
        if self._wake is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def watch(self, interval: float = 5.0, *, sighup: bool = True) -> None:
        """Forever: every `interval` seconds, or when asked (`SIGHUP`), re-fit in a thread if the files changed."""
        self._wake, self._loop = asyncio.Event(), asyncio.get_running_loop()
        listening = sighup and _listen(self._loop, self.request_reload)
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=interval)
                    forced = True
                except TimeoutError:
                    forced = False
                self._wake.clear()
                if forced or self.changed():
                    try:
                        await asyncio.to_thread(self.reload)
                    except Exception:  # unforeseen: logged, and the watching goes on with the last good model
                        log.exception("knowledge base not reloaded, the last good one keeps answering")
        finally:
            if listening:
                self._loop.remove_signal_handler(signal.SIGHUP)


def _listen(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> bool:
    """Call `callback` on SIGHUP; False where that cannot be done (Windows, or not the main thread)."""
    if not hasattr(signal, "SIGHUP"):
        return False
    try:
        loop.add_signal_handler(signal.SIGHUP, callback)
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True


def _fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of every file the loader reads: cheap to poll."""
    files = [
        root / "facts.yaml",
        root / "out_of_scope.yaml",
        *sorted((root / "faq").glob("*.md")),
    ]
    result = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        result.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(result)
