"""What the bot says: one user message and the conversation's context in, a turn out.

The dialogue decides and never writes; core.inbox applies a turn in one transaction. Questions
about a user's own records need the database: the dialogue recognises them and hands them on
as `Turn.status`, which core.inbox passes to core.status in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core import texts
from core.conversations import State, bot_may_answer
from core.faq import Decision, FaqResult, KnowledgeBase
from core.handoff import HandoffRequest, Priority
from core.intents import Intent, bare_reference, classify, code_in, find_record_reference
from core.messages import Option

MAX_QUESTION_LENGTH = 2000
MISSES_BEFORE_OFFER = 2
AGENT = Option(texts.TALK_TO_PERSON, "action:agent")
MENU = Option(texts.MAIN_MENU, "action:menu")
KEEP_TRYING = Option(texts.KEEP_TRYING, "action:continue")
SOMETHING_ELSE = Option(texts.SOMETHING_ELSE, "action:else")
AUDIENCES = (
    Option(texts.AUDIENCE_ORGANISER, "audience:organiser"),
    Option(texts.AUDIENCE_BACKER, "audience:backer"),
    Option(texts.AUDIENCE_PARTICIPANT, "audience:participant"),
)
_HAS_WORD = re.compile(r"\w")
# While the bot waits for a reference or a code, these still do what they always do.
_LEAVE_STATUS = (Intent.MENU, Intent.AGENT, Intent.GREETING, Intent.GOODBYE, Intent.THANKS)
# Topics that always go to a person, with priority high, as well as being answered: disputes and
# suspected scams, appeals, payouts of the wrong amount, and overdue payouts.
ESCALATED_TOPICS = {
    "campaign-dispute": "dispute or suspected scam",
    "appeal-disqualification": "appeal",
    "amount-discrepancy": "amount discrepancy",
    "disbursement-delayed": "overdue payout",
}


@dataclass(frozen=True)
class StatusFlow:
    """A status question in progress, stored with the conversation: what the bot waits for next."""

    step: str  # "reference" or "code"
    reference: str | None = None
    topic: str | None = None  # campaign, disbursement, contribution, registration
    intent: str = "status"  # or "refund"


@dataclass(frozen=True)
class StatusAsk:
    """A message for core.status to answer; `reference` and `refund` come from a picked option."""

    text: str
    flow: StatusFlow | None = None
    reference: str | None = None
    refund: bool = False


@dataclass(frozen=True)
class Context:
    """What the dialogue knows of the conversation before this message."""

    state: State = State.BOT
    misses: int = 0
    options: tuple[Option, ...] = ()
    has_attachments: bool = False
    carrier_opt_out: bool = False
    status_flow: StatusFlow | None = None


@dataclass(frozen=True)
class Reply:
    """One reply; `redacted`, for a secret, is what is stored instead and kept once it is sent."""

    text: str
    options: tuple[Option, ...] = ()
    redacted: str | None = None


@dataclass
class Turn:
    """The dialogue's decision: what to say and how the conversation changes."""

    replies: list[Reply] = field(default_factory=list)
    misses: int = 0
    topic: str | None = None
    handoff: HandoffRequest | None = None
    opt_out: bool | None = None
    details: dict[str, object] = field(default_factory=dict)
    status: StatusAsk | None = None  # for core.status to answer
    sets_flow: bool = False  # replace the stored status flow with `flow` (None ends it)
    flow: StatusFlow | None = None
    redact_inbound: bool = False  # the user's message was a one-time code: do not keep it

    @property
    def options(self) -> tuple[Option, ...]:
        """The quick replies the user may answer next: those of the last reply."""
        return self.replies[-1].options if self.replies else ()


class Dialogue:
    """Turns a message into a Turn, using the knowledge base for everything not handled by rule."""

    def __init__(self, knowledge: KnowledgeBase) -> None:
        self.knowledge = knowledge

    def respond(self, context: Context, text: str) -> Turn:
        intent = classify(text) if text else None
        if intent in (Intent.STOP, Intent.START):
            return self._opt(intent is Intent.STOP, context)
        if not bot_may_answer(context.state):
            return Turn(misses=context.misses, details={"silent": context.state.value})
        chosen = pick_option(context.options, text, intent)
        if chosen is not None:
            return self._choose(chosen, context, text)
        if not text or not _HAS_WORD.search(text):
            return self._no_words(context, has_text=bool(text))
        if len(text) > MAX_QUESTION_LENGTH:
            return Turn(replies=[Reply(texts.TOO_LONG, (MENU, AGENT))], misses=context.misses)
        if context.status_flow is not None and intent not in _LEAVE_STATUS and _continues(context.status_flow, text):
            return self._status(context, text)
        if intent is not None:
            return self._intent(intent, context, text)
        return self._faq(context, self.knowledge.lookup(text))

    def _opt(self, out: bool, context: Context) -> Turn:
        if context.carrier_opt_out:  # the carrier has already told the user; a reply would be refused
            return Turn(misses=context.misses, opt_out=out, details={"opt_out": out})
        reply = texts.STOPPED if out else texts.STARTED
        return Turn(
            replies=[Reply(reply)], misses=context.misses, opt_out=out, details={"opt_out": out}, sets_flow=True
        )

    def _no_words(self, context: Context, *, has_text: bool) -> Turn:
        if context.has_attachments and not has_text:
            return Turn(replies=[Reply(texts.ATTACHMENT_ONLY, (MENU, AGENT))], misses=context.misses)
        reply = texts.NO_WORDS if has_text else texts.EMPTY
        return Turn(replies=[Reply(reply, (MENU, AGENT))], misses=context.misses)

    def _intent(self, intent: Intent, context: Context, text: str) -> Turn:
        if intent is Intent.GREETING:
            return self.menu(greeting=True)
        if intent is Intent.MENU:
            return self.menu(greeting=False)
        if intent is Intent.AGENT:
            return self.handoff(HandoffRequest(reason="asked for a person"))
        if intent is Intent.THANKS:
            return Turn(replies=[Reply(texts.WELCOME)])
        if intent is Intent.GOODBYE:
            return Turn(replies=[Reply(texts.GOODBYE)], sets_flow=True)
        if intent is Intent.STATUS:
            return self._status(context, text)
        # A bare yes or no with nothing pending to answer: treat it as a question like any other.
        return self._faq(context, self.knowledge.lookup(text))

    def menu(self, *, greeting: bool) -> Turn:
        text = texts.GREETING if greeting else texts.MENU
        return Turn(replies=[Reply(text, (*AUDIENCES, AGENT))], details={"intent": "menu"}, sets_flow=True)

    def handoff(self, request: HandoffRequest) -> Turn:
        """A turn asking for a person; core.inbox opens the ticket and writes the reply."""
        return Turn(handoff=request, topic=request.topic, details={"intent": "handoff"}, sets_flow=True)

    def handoff_replies(self, reference: str, *, desk_open: bool, wait: str | None = None) -> list[Reply]:
        """What the user is told once their ticket is open; `wait` says how long a person takes."""
        if desk_open:
            text = texts.HANDED_OFF.format(reference=reference)
            return [Reply(f"{text} {wait}" if wait else text)]
        contact = self.knowledge.answer_for("contact-support")
        text = texts.NO_DESK.format(reference=reference)
        if contact.answer:
            text = f"{text}\n\n{contact.answer}"
        return [Reply(text, (MENU,))]

    def _status(self, context: Context, text: str, *, reference: str | None = None, refund: bool = False) -> Turn:
        ask = StatusAsk(text=text, flow=context.status_flow, reference=reference, refund=refund)
        return Turn(misses=context.misses, status=ask, details={"intent": "status"})

    def _choose(self, option: Option, context: Context, text: str) -> Turn:
        kind, _, value = option.value.partition(":")
        if kind in ("status", "refund"):  # one of the user's own records, offered by core.status
            return self._status(context, text, reference=value, refund=kind == "refund")
        if kind == "topic":
            return self._faq(context, self.knowledge.answer_for(value))
        if kind == "audience":
            topics = self.knowledge.topics(value)
            choices = tuple(Option(topic.title, f"topic:{topic.topic}") for topic in topics)
            return Turn(replies=[Reply(texts.PICK_TOPIC, (*choices, AGENT))])
        if value == "agent":
            # After two misses the bot offers a person next to "keep trying": accepting it is a miss handed on.
            missed = KEEP_TRYING in context.options
            return self.handoff(HandoffRequest(reason="bot could not answer" if missed else "asked for a person"))
        if value == "menu":
            return self.menu(greeting=False)
        if value == "continue":
            return Turn(replies=[Reply(texts.KEEP_TRYING_REPLY, (MENU,))])
        return self._miss(context, texts.REPHRASE)

    def _faq(self, context: Context, result: FaqResult) -> Turn:
        details: dict[str, object] = {"decision": result.decision.value, "confidence": round(result.confidence, 3)}
        if result.decision is Decision.ANSWER and result.answer:
            details["topic"] = result.topic
            turn = Turn(replies=[Reply(result.answer)], topic=result.topic, details=details)
            if result.topic in ESCALATED_TOPICS:
                turn.handoff = HandoffRequest(ESCALATED_TOPICS[result.topic], Priority.HIGH, result.topic)
                turn.sets_flow = True
            return turn
        if result.decision is Decision.ASK and result.candidates:
            choices = tuple(Option(c.title, f"topic:{c.topic}") for c in result.candidates[:3])
            return self._miss(context, texts.DID_YOU_MEAN, (*choices, SOMETHING_ELSE), details)
        return self._miss(context, texts.DONT_KNOW, (MENU, AGENT), details)

    def _miss(
        self,
        context: Context,
        text: str,
        options: tuple[Option, ...] = (MENU, AGENT),
        details: dict[str, object] | None = None,
    ) -> Turn:
        misses = context.misses + 1
        if misses >= MISSES_BEFORE_OFFER:
            text, options = texts.OFFER_PERSON, (AGENT, KEEP_TRYING)
            misses = 0
        return Turn(replies=[Reply(text, options)], misses=misses, details=details or {})


def _continues(flow: StatusFlow, text: str) -> bool:
    """Whether `text` answers what the status flow waits for, or asks about a record again."""
    awaited = code_in(text) if flow.step == "code" else bare_reference(text)
    return bool(awaited or find_record_reference(text) or classify(text) is Intent.STATUS)


def pick_option(options: tuple[Option, ...], text: str, intent: Intent | None) -> Option | None:
    """The offered option the user chose: by number, by label, by value, or yes/no to an offer."""
    if not options:
        return None
    answer = text.strip().rstrip(".").casefold()
    if answer.isdigit() and 1 <= int(answer) <= len(options):
        return options[int(answer) - 1]
    for option in options:
        if answer in (option.label.casefold(), option.value.casefold()):
            return option
    values = {option.value: option for option in options}
    if intent is Intent.YES and AGENT.value in values and KEEP_TRYING.value in values:
        return values[AGENT.value]
    if intent is Intent.NO and KEEP_TRYING.value in values:
        return values[KEEP_TRYING.value]
    return None
