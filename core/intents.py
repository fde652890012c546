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
            r"h+i+(?: there)?",
            "hey+(?: there)?",
            "hello+(?: there)?",
            "howzit",
            "sawubona",
            "molo",
            "dumela",
            "hallo",
            "good (?:morning|afternoon|evening|day)",
            "hola",
            "yo",
            "sup",
        ),
    ),
    (
        Intent.THANKS,
        _words(
            "thanks?(?: you)?(?: so much| very much| a lot)?",
            "thx",
            "ty",
            "cheers",
            "ngiyabonga",
            "dankie",
            "enkosi",
            "great,? thanks?",
            "ok,? thanks?",
            "perfect,? thanks?",
            "thank u",
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
# Platform record references: an optional SP-, a kind (CAMP, PAY, DSB, DON, CON, REG, ENTRY...),
# then at least four letters or digits including a digit: SP-CAMP-1042, DSB-48213, SP-PAY-DEMO1.
# A ticket reference (SP- and six characters) is too short to match, and so are plain words
# such as "contribution" or "registration", which have no digit.
RECORD_REFERENCE = re.compile(
    r"\b(?:SP-)?(?:CAMP(?:AIGN)?|CMP|PAY(?:OUT)?|DSB|DIS|DON|CON|CTB|REG|ENTRY|RF)-?"
    r"(?=[A-Z0-9-]*\d)[A-Z0-9]{4,}(?:-[A-Z0-9]+)*\b",
    re.IGNORECASE,
)
# When the bot has asked for a reference, a one-word answer with letters and digits is taken as one.
_BARE_REFERENCE = re.compile(r"(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_CODE = re.compile(r"\d{4,8}")
_CODE_NOISE = re.compile(r"[\s.-]")
_REFUND_REQUEST = re.compile(
    r"\b(?:(?:want|need|would like|request(?:ing)?|claim(?:ing)?|ask(?:ing)? for|get|give me)\b.{0,25}\brefund|"
    r"refund (?:me|my|it|this))\b",
    re.IGNORECASE,
)
_TOPICS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("disbursement", re.compile(r"\b(?:pay-?outs?|disbursements?|withdrawals?|funds)\b", re.IGNORECASE)),
    ("contribution", re.compile(r"\b(?:refunds?|contributions?|donations?|pledges?|chargebacks?)\b", re.IGNORECASE)),
    ("registration", re.compile(r"\b(?:entry|entries|submissions?|registrations?|contests?)\b", re.IGNORECASE)),
    ("campaign", re.compile(r"\b(?:campaigns?|fundraisers?)\b", re.IGNORECASE)),
)


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
    """Whether `text` asks about the user's own payout, refund or entry, or asks for their own refund."""
    if RECORD_REFERENCE.search(text):
        return True
    if not (_MINE.search(text) and _RECORD.search(text)):
        return False
    return bool(_STATUS_WORDS.search(text) or is_refund_request(text))


def find_record_reference(text: str) -> str | None:
    """The first platform record reference in `text`, upper-cased."""
    match = RECORD_REFERENCE.search(text)
    return match.group(0).upper() if match else None


def bare_reference(text: str) -> str | None:
    """`text` as a reference when it is one word of letters and digits (the answer to "which one?")."""
    word = text.strip().rstrip(".!?")
    if 4 <= len(word) <= 64 and _BARE_REFERENCE.fullmatch(word):
        return word.upper()
    return None


def code_in(text: str) -> str | None:
    """The digits of `text` when it is a one-time code and nothing else ("482 913" included)."""
    digits = _CODE_NOISE.sub("", text.strip())
    return digits if _CODE.fullmatch(digits) else None


def is_refund_request(text: str) -> bool:
    """Whether `text` asks for a refund, rather than about one ("I want a refund", "refund my ...")."""
    return bool(_REFUND_REQUEST.search(text))


def record_topic(text: str) -> str | None:
    """Which kind of record `text` is about: disbursement, contribution, registration, campaign, or None."""
    return next((topic for topic, pattern in _TOPICS if pattern.search(text)), None)
