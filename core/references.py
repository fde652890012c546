"""Ticket reference numbers people can read out on the phone and nobody can guess."""

from __future__ import annotations

import re
import secrets

# No 0/O, 1/I/L: a reference is read aloud and typed on phones.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 6
PATTERN = re.compile(rf"\bSP-[{ALPHABET}]{{{LENGTH}}}\b", re.IGNORECASE)


def new_reference() -> str:
    """A fresh random reference such as ``SP-7K4Q2M`` (31**6, about 887 million, possibilities)."""
    return "SP-" + "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def find_reference(text: str) -> str | None:
    """The first ticket reference mentioned in `text`, upper-cased."""
    match = PATTERN.search(text)
    return match.group(0).upper() if match else None
