"""Ticket references are random, readable, and found in free text."""

from __future__ import annotations

import re

from core.references import find_reference, new_reference


def test_references_are_readable_and_unambiguous() -> None:
    for _ in range(200):
        assert re.fullmatch(r"SP-[2-9A-HJKMNP-Z]{6}", new_reference())


def test_references_are_not_a_sequence() -> None:
    drawn = [new_reference() for _ in range(500)]
    assert len(set(drawn)) == 500
    assert drawn != sorted(drawn)


def test_a_reference_is_found_in_a_message() -> None:
    assert find_reference("hi, any news on sp-7k4q2m please") == "SP-7K4Q2M"
    assert find_reference("order SP-12345") is None
