"""The text splitter and every renderer over any Unicode at any length: no exception, nothing lost or
reordered, every part within its channel's limit, and no markup smuggled through the escaping."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.slack import (
    BUTTON_TEXT_LIMIT,
    BUTTON_VALUE_LIMIT,
    SECTION_TEXT_LIMIT,
    blocks,
    fallback_text,
)
from adapters.telegram import MAX_CALLBACK_BYTES, inline_keyboard
from core.markup import to_plain, to_slack_mrkdwn, to_telegram_html
from core.messages import Capabilities, Option, OutboundMessage
from core.render import render, split_text
from tests.hostile.strategies import ANY_CHARACTER, any_text

EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Long texts too: up to 20,000 characters (the platform API's limit), from a small alphabet
# some of the time so that boundaries (spaces, full stops, line breaks) come up often.
long_text = st.text(ANY_CHARACTER, max_size=20_000) | st.text(
    st.sampled_from(" .!?\n\n\txyzé👍\u200b"), max_size=20_000
)
# And very long ones for sure: a random snippet repeated, up to 80,000 characters.
repeated = st.builds(
    lambda snippet, times: snippet * times, st.text(ANY_CHARACTER, min_size=1, max_size=40), st.integers(50, 2000)
)
texts = any_text | long_text | repeated
# Markdown's own marks, links and the NUL the converters use internally, thrown together.
markdownish = st.lists(
    st.sampled_from([*'*_`[]()-\n \x00<>&|"', "https://a.b/c", "0", "1", "x", "**"]), max_size=200
).map("".join)
options = st.lists(st.builds(Option, label=any_text, value=any_text), max_size=30).map(tuple)
# The bot's own options (it never echoes a user's text as one) are valid Unicode: no lone surrogates.
valid_text = st.text(st.characters(codec="utf-8"))
bot_options = st.lists(st.builds(Option, label=valid_text, value=valid_text), max_size=30).map(tuple)


def squeeze(text: str) -> str:
    return "".join(text.split())


@EXAMPLES
@given(text=texts, limit=st.integers(min_value=1, max_value=5000))
def test_splitting_keeps_every_character_in_order_within_the_limit(text: str, limit: int) -> None:
    pieces = split_text(text, limit)
    assert "".join(pieces) == text
    assert all(len(piece) <= limit for piece in pieces)
    assert all(pieces) or pieces == [""]


@EXAMPLES
@given(
    text=texts,
    options=options,
    limit=st.none() | st.integers(min_value=20, max_value=5000),
    buttons=st.booleans(),
    max_buttons=st.none() | st.integers(min_value=1, max_value=100),
)
def test_rendering_keeps_the_words_and_fits_any_channel(
    text: str, options: tuple[Option, ...], limit: int | None, buttons: bool, max_buttons: int | None
) -> None:
    message = OutboundMessage(channel="c", user_id="u", text=text, options=options)
    capabilities = Capabilities(max_text_length=limit, buttons=buttons, max_buttons=max_buttons)
    parts = render(message, capabilities)
    assert parts
    if limit is not None:
        assert all(len(part.text) <= limit for part in parts)
    assert all(part.options == () for part in parts[:-1])
    if len(parts) > 1:
        suffix = re.compile(rf" \((\d+)/{len(parts)}\)$")
        assert [int(suffix.search(part.text).group(1)) for part in parts] == list(range(1, len(parts) + 1))  # type: ignore[union-attr]
        said = "".join(suffix.sub("", part.text) for part in parts)
    else:
        said = parts[0].text
    assert squeeze(text) in squeeze(said)  # the options may follow as a numbered list


@EXAMPLES
@given(text=texts | markdownish)
def test_markup_conversions_never_fail(text: str) -> None:
    assert isinstance(to_plain(text), str)
    assert isinstance(to_telegram_html(text), str)
    assert isinstance(to_slack_mrkdwn(text), str)


TELEGRAM_TAGS = re.compile(r'</?(?:b|i|code)>|<a href="[^"<>]*">|</a>')


@EXAMPLES
@given(text=texts | markdownish)
def test_telegram_html_holds_only_our_tags(text: str) -> None:
    assert "<" not in TELEGRAM_TAGS.sub("", to_telegram_html(text))


SLACK_LINKS = re.compile(r"<https?://[^|>\s]+\|[^<>]*>")


@EXAMPLES
@given(text=texts | markdownish)
def test_slack_mrkdwn_holds_only_our_links(text: str) -> None:
    rest = SLACK_LINKS.sub("", to_slack_mrkdwn(text))
    assert "<" not in rest and ">" not in rest


@EXAMPLES
@given(text=texts, options=options)
def test_slack_blocks_stay_within_block_kit_limits(text: str, options: tuple[Option, ...]) -> None:
    mrkdwn = to_slack_mrkdwn(text)
    made = blocks(mrkdwn, options)
    assert fallback_text(mrkdwn, options)
    for block in made:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SECTION_TEXT_LIMIT
        else:
            for button in block["elements"]:
                assert len(button["text"]["text"]) <= BUTTON_TEXT_LIMIT
                assert len(button["value"]) <= BUTTON_VALUE_LIMIT
    sections = "".join(block["text"]["text"] for block in made if block["type"] == "section")
    assert squeeze(sections) == squeeze(mrkdwn)


@EXAMPLES
@given(options=bot_options)
def test_telegram_buttons_carry_callback_data_telegram_accepts(options: tuple[Option, ...]) -> None:
    keyboard = inline_keyboard(options)
    if not options:
        assert keyboard is None
        return
    assert keyboard is not None
    for row in keyboard.inline_keyboard:
        for button in row:
            assert 1 <= len(str(button.callback_data).encode("utf-8")) <= MAX_CALLBACK_BYTES
