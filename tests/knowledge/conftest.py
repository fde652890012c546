"""Shared fixtures of the knowledge tests: the bundled knowledge base, fitted once per run."""

from __future__ import annotations

import pytest

from knowledge.service import KnowledgeService


@pytest.fixture(scope="session")
def bundled_knowledge() -> KnowledgeService:
    """The bundled knowledge base with the light matcher (read-only in tests: lookups only)."""
    return KnowledgeService.load()
