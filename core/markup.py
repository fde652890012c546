"""The knowledge base's Markdown, said once and shown per channel: Telegram HTML, Slack mrkdwn, plain text.

Only the small subset the answers use is understood: **bold**, *italic* or _italic_, `code`,
[text](https://link) and "- " bullets. Anything else passes through as text.
"""

from __future__ import annotations

import html
import re

_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![\w*])[*_](?=\S)([^*_\n]+?)(?<=\S)[*_](?![\w*])")
_CODE = re.compile(r"`([^`\n]+)`")
_BULLET = re.compile(r"^(\s*)[-*] ", re.MULTILINE)


def to_plain(markdown: str) -> str:
    """Plain text for SMS, WhatsApp and X: emphasis dropped, links as 'text: url', bullets as '•'."""
    text = _LINK.sub(lambda m: m.group(2) if m.group(1) == m.group(2) else f"{m.group(1)}: {m.group(2)}", markdown)
    text = _BULLET.sub(r"\1• ", text)
    text = _BOLD.sub(r"\1", text)
    text = _ITALIC.sub(r"\1", text)
    return _CODE.sub(r"\1", text)


def to_telegram_html(markdown: str) -> str:
    """Telegram's HTML parse mode: everything escaped, then the subset turned into tags."""
    links: list[str] = []

    def keep_link(match: re.Match[str]) -> str:
        links.append(f'<a href="{html.escape(match.group(2))}">{html.escape(match.group(1), quote=False)}</a>')
        return f"\x00{len(links) - 1}\x00"

    # NUL marks the links set aside below, so one already in the text is dropped: it could
    # otherwise pose as a marker ("\x000\x00") and repeat a link or fail on a missing one.
    text = _LINK.sub(keep_link, markdown.replace("\x00", ""))
    text = html.escape(text, quote=False)
    text = _BULLET.sub(r"\1• ", text)
    text = _BOLD.sub(r"<b>\1</b>", text)
    text = _ITALIC.sub(r"<i>\1</i>", text)
    text = _CODE.sub(r"<code>\1</code>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: links[int(m.group(1))], text)


def to_slack_mrkdwn(markdown: str) -> str:
    """Slack's mrkdwn: &, < and > escaped, *bold*, _italic_, <url|text> links, • bullets."""
    links: list[str] = []

    def keep_link(match: re.Match[str]) -> str:
        links.append(f"<{match.group(2)}|{_slack_escape(match.group(1))}>")
        return f"\x00{len(links) - 1}\x00"

    text = _slack_escape(_LINK.sub(keep_link, markdown.replace("\x00", "")))  # NUL marks links, as above
    text = _BULLET.sub(r"\1• ", text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _BOLD.sub(r"*\1*", text)
    return re.sub("\x00(\\d+)\x00", lambda m: links[int(m.group(1))], text)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
