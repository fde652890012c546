"""The few things the dialogue recognises by rule before asking the knowledge base."""

from __future__ import annotations

import re
from enum import Enum


class Intent(str, Enum):
    """What a message asks of the bot itself, rather than of the knowledge base."""

    STOP = "stop"
    START = "start"
    GREETING = "greeting"
    MENU = "menu"
    AGENT = "agent"
    THANKS = "thanks"
    GOODBYE = "goodbye"
    YES = "yes"
    NO = "no"
    STATUS = "status"


def _words(*patterns: str) -> re.Pattern[str]:
    return re.compile(r"^(?:" + "|".join(patterns) + r")[\s!.?,]*$", re.IGNORECASE)


# Keywords carriers and WhatsApp users expect to work on their own (Twilio's opt-out list).
_WHOLE_MESSAGE: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    (Intent.STOP, _words("stop", "stopall", "unsubscribe", "cancel", "end", "quit", "opt[ -]?out")),
    (Intent.START, _words("start", "unstop", "subscribe", "opt[ -]?in", "resume")),
    (Intent.MENU, _words("help", "menu", "main menu", "options", r"\?+", "what can you do")),
    (Intent.YES, _words("yes", "yes please", "yeah", "yep", "y", "ok", "okay", "sure", "please do")),
    (Intent.NO, _words("no", "nope", "n", "no thanks", "no thank you", "not now")),
    (
        Intent.GREETING,
        _words(
            r"h+i+(?: there)?", "hey+(?: there)?", "hello+(?: there)?", "howzit", "sawubona", "molo",
            "dumela", "hallo", "good (?:morning|afternoon|evening|day)", "hola", "yo", "sup",
        ),
    ),
    (
        Intent.THANKS,
        _words(
            "thanks?(?: you)?(?: so much| very much| a lot)?", "thx", "ty", "cheers", "ngiyabonga",
            "dankie", "enkosi", "great,? thanks?", "ok,? thanks?", "perfect,? thanks?", "thank u",
        ),
    ),
    (Intent.GOODBYE, _words("bye", "goodbye", "good bye", "see you", "later", "cya", "totsiens")),
)

_AGENT = re.compile(
    r"\b(?:agent|human|real person|a person|someone real|consultant|operator|representative|"
    r"speak to (?:someone|somebody)|talk to (?:someone|somebody)|call me|live chat|"
    r"this is (?:useless|not helping|pointless|rubbish)|you(?:'re| are) (?:useless|not helping)|"
    r"not helpful|doesn'?t help)\b",
    re.IGNORECASE,
)

# A question about the user's own record: the possessive or a record reference, plus a status word.
_MINE = re.compile(r"\b(?:my|mine|our)\b", re.IGNORECASE)
_RECORD = re.compile(
    r"\b(?:payout|pay-?out|disbursement|funds?|money|transfer|refund|contribution|donation|"
    r"entry|submission|registration|application)\b",
    re.IGNORECASE,
)
_STATUS_WORDS = re.compile(
    r"\b(?:status|where is|where's|wheres|has .{1,40} (?:arrived|been (?:paid|sent|received|processed))|"
    r"track|check on|update on|any news|progress of|been received|go(?:ne)? through|did .{1,30} arrive)\b",
    re.IGNORECASE,
)
# Platform record references look like DSB-1234, CON-..., REG-..., CMP-...
RECORD_REFERENCE = re.compile(r"\b(?:DSB|DIS|CON|REG|CMP|RF)-?[A-Z0-9]{4,}\b", re.IGNORECASE)


def classify(text: str) -> Intent | None:
    """The rule-based intent of `text`, or None when the knowledge base should answer it."""
    stripped = text.strip()
    for intent, pattern in _WHOLE_MESSAGE:
        if pattern.match(stripped):
            return intent
    if _AGENT.search(stripped):
        return Intent.AGENT
    if is_status_question(stripped):
        return Intent.STATUS
    return None


def is_status_question(text: str) -> bool:
    """Whether `text` asks about the state of the user's own payout, refund or entry."""
    if RECORD_REFERENCE.search(text):
        return True
    return bool(_MINE.search(text) and _RECORD.search(text) and _STATUS_WORDS.search(text))
