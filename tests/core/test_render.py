"""Rendering: numbered lists where a channel has no buttons, splitting long text without losing any."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.messages import Capabilities, Option, OutboundMessage
from core.render import render, split_text

OPTIONS = (Option("Payouts", "topic:a"), Option("Refunds", "topic:b"))


def message(text: str, options: tuple[Option, ...] = ()) -> OutboundMessage:
    return OutboundMessage(channel="sms", user_id="u", text=text, options=options)


def test_options_become_a_numbered_list_without_buttons() -> None:
    [part] = render(message("Pick one:", OPTIONS), Capabilities(buttons=False))
    assert part.text == "Pick one:\n\n1. Payouts\n2. Refunds\n\nReply with a number."
    assert part.options == ()


def test_options_stay_buttons_where_the_channel_has_them() -> None:
    [part] = render(message("Pick one:", OPTIONS), Capabilities(buttons=True, max_buttons=5))
    assert part.text == "Pick one:"
    assert part.options == OPTIONS


def test_long_text_is_split_at_paragraphs_and_numbered() -> None:
    text = "\n\n".join(f"Paragraph {n} " + "word " * 30 for n in range(6))
    parts = render(message(text, OPTIONS), Capabilities(max_text_length=400, buttons=True, max_buttons=3))
    assert len(parts) > 1
    assert all(len(part.text) <= 400 for part in parts)
    assert [part.text.rsplit(" ", 1)[1] for part in parts] == [f"({n}/{len(parts)})" for n in range(1, len(parts) + 1)]
    assert parts[1].text.startswith("Paragraph")
    assert parts[-1].options == OPTIONS and all(part.options == () for part in parts[:-1])


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=3000), limit=st.integers(min_value=1, max_value=500))
def test_splitting_never_loses_or_reorders_a_character(text: str, limit: int) -> None:
    pieces = split_text(text, limit)
    assert "".join(pieces) == text
    assert all(len(piece) <= limit for piece in pieces)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=5000), limit=st.integers(min_value=20, max_value=1600), buttons=st.booleans())
def test_rendering_any_text_fits_the_channel(text: str, limit: int, buttons: bool) -> None:
    parts = render(message(text, OPTIONS), Capabilities(max_text_length=limit, buttons=buttons, max_buttons=3))
    assert parts and all(len(part.text) <= limit for part in parts)
