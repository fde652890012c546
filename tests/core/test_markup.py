"""Markdown shown per channel: Telegram HTML escaped, Slack mrkdwn, plain text with bare links."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.markup import to_plain, to_slack_mrkdwn, to_telegram_html

ANSWER = "**Timing:** paid in 5 < 7 days & *usually* sooner.\n\n- see [the tracker](https://saypro.online/track?a=1&b=2)\n- type `agent`"


def test_plain_text_drops_emphasis_and_keeps_links_bare() -> None:
    assert to_plain(ANSWER) == (
        "Timing: paid in 5 < 7 days & usually sooner.\n\n• see the tracker: https://saypro.online/track?a=1&b=2\n• type agent"
    )


def test_telegram_html_escapes_then_tags() -> None:
    assert to_telegram_html(ANSWER) == (
        "<b>Timing:</b> paid in 5 &lt; 7 days &amp; <i>usually</i> sooner.\n\n"
        '• see <a href="https://saypro.online/track?a=1&amp;b=2">the tracker</a>\n• type <code>agent</code>'
    )


def test_slack_mrkdwn_uses_its_own_marks() -> None:
    assert to_slack_mrkdwn(ANSWER) == (
        "*Timing:* paid in 5 &lt; 7 days &amp; _usually_ sooner.\n\n"
        "• see <https://saypro.online/track?a=1&b=2|the tracker>\n• type `agent`"
    )


def test_user_text_that_looks_like_html_is_not_markup() -> None:
    assert to_telegram_html("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;"


@given(st.text(max_size=500))
def test_any_text_converts_without_error(text: str) -> None:
    to_plain(text), to_slack_mrkdwn(text)
    assert "<script" not in to_telegram_html(text).lower()
