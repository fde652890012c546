"""Fit an outbound message to a channel: quick replies as buttons or a numbered list, long text split."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.messages import Capabilities, Option, OutboundMessage

_SUFFIX_ROOM = len(" (99/99)")
# Preferred cut points, best first: a paragraph break, a line break, the end of a sentence, a space.
_BOUNDARIES = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"[.!?…](?=\s)\s*"), re.compile(r"\s+"))


@dataclass(frozen=True)
class Part:
    """One message as it goes to the provider: text, and the options when the channel shows buttons."""

    text: str
    options: tuple[Option, ...] = ()


def numbered_list(options: tuple[Option, ...]) -> str:
    """The plain-text form of quick replies, for channels without buttons."""
    lines = [f"{number}. {option.label}" for number, option in enumerate(options, start=1)]
    return "\n".join(lines) + "\n\nReply with a number."


def split_text(text: str, limit: int) -> list[str]:
    """Cut `text` into pieces of at most `limit` characters, at the best boundary available.

    Joining the pieces gives back `text` exactly: nothing is lost or reordered.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = _cut_point(rest, limit)
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def _cut_point(text: str, limit: int) -> int:
    window = text[: limit + 1]
    for boundary in _BOUNDARIES:
        ends = [match.end() for match in boundary.finditer(window) if 0 < match.end() <= limit]
        # A cut in the first third would leave many tiny pieces; look for a coarser one instead.
        good = [end for end in ends if end > limit // 3]
        if good:
            return good[-1]
    return limit


def render(message: OutboundMessage, capabilities: Capabilities) -> list[Part]:
    """The parts to send, in order; options ride on the last part (or in its text).

    A template message is one part whatever its length: the provider sends the template, and the
    text is only its readable record.
    """
    text = message.text.strip()
    if message.template is not None:
        return [Part(text=text)]
    options = message.options
    if options and not capabilities.buttons:
        text = f"{text}\n\n{numbered_list(options)}" if text else numbered_list(options)
        options = ()
    elif options and capabilities.max_buttons:
        options = options[: capabilities.max_buttons]
    limit = capabilities.max_text_length
    if limit is None or len(text) <= limit:
        return [Part(text=text, options=options)]
    pieces = _pieces(text, limit, room=_SUFFIX_ROOM)
    total = len(pieces)
    parts = [Part(text=f"{piece} ({index}/{total})") for index, piece in enumerate(pieces, start=1)]
    parts[-1] = Part(text=parts[-1].text, options=options)
    return parts


def _pieces(text: str, limit: int, *, room: int) -> list[str]:
    """`text` in pieces that leave `room` for the " (n/total)" suffix; more room when the count
    of pieces needs it (a hundred parts or more)."""
    while True:
        pieces = [piece.strip() for piece in split_text(text, limit - room)]
        pieces = [piece for piece in pieces if piece] or [""]
        needed = len(f" ({len(pieces)}/{len(pieces)})")
        if needed <= room:
            return pieces
        room = needed
