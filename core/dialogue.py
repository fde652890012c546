"""What the bot says: one user message and the conversation's context in, a turn out.

The dialogue decides and never writes; core.inbox applies a turn in one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from core.conversations import State, bot_may_answer
from core.faq import Decision, FaqResult, KnowledgeBase
from core.handoff import HandoffRequest, Priority
from core.intents import Intent, classify
from core.messages import Option
from core import texts

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


@dataclass(frozen=True)
class Context:
    """What the dialogue knows of the conversation before this message."""

    state: State = State.BOT
    misses: int = 0
    options: tuple[Option, ...] = ()
    has_attachments: bool = False
    carrier_opt_out: bool = False


@dataclass(frozen=True)
class Reply:
    text: str
    options: tuple[Option, ...] = ()


@dataclass
class Turn:
    """The dialogue's decision: what to say and how the conversation changes."""

    replies: list[Reply] = field(default_factory=list)
    misses: int = 0
    topic: str | None = None
    handoff: HandoffRequest | None = None
    opt_out: bool | None = None
    details: dict[str, object] = field(default_factory=dict)

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
            return self._choose(chosen, context)
        if not text or not _HAS_WORD.search(text):
            return self._no_words(context, has_text=bool(text))
        if len(text) > MAX_QUESTION_LENGTH:
            return Turn(replies=[Reply(texts.TOO_LONG, (MENU, AGENT))], misses=context.misses)
        if intent is not None:
            return self._intent(intent, context, text)
        return self._faq(context, self.knowledge.lookup(text))

    def _opt(self, out: bool, context: Context) -> Turn:
        if context.carrier_opt_out:  # the carrier has already told the user; a reply would be refused
            return Turn(misses=context.misses, opt_out=out, details={"opt_out": out})
        reply = texts.STOPPED if out else texts.STARTED
        return Turn(replies=[Reply(reply)], misses=context.misses, opt_out=out, details={"opt_out": out})

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
            return Turn(replies=[Reply(texts.GOODBYE)])
        if intent is Intent.STATUS:
            return self._status(text)
        # A bare yes or no with nothing pending to answer: treat it as a question like any other.
        return self._faq(context, self.knowledge.lookup(text))

    def menu(self, *, greeting: bool) -> Turn:
        text = texts.GREETING if greeting else texts.MENU
        return Turn(replies=[Reply(text, (*AUDIENCES, AGENT))], details={"intent": "menu"})

    def handoff(self, request: HandoffRequest) -> Turn:
        """A turn asking for a person; core.inbox opens the ticket and writes the reply."""
        return Turn(handoff=request, topic=request.topic, details={"intent": "handoff"})

    def handoff_replies(self, reference: str, *, desk_open: bool) -> list[Reply]:
        """What the user is told once their ticket is open."""
        if desk_open:
            return [Reply(texts.HANDED_OFF.format(reference=reference))]
        contact = self.knowledge.answer_for("contact-support")
        text = texts.NO_DESK.format(reference=reference)
        if contact.answer:
            text = f"{text}\n\n{contact.answer}"
        return [Reply(text, (MENU,))]

    def _status(self, text: str) -> Turn:
        # Status look-ups are not built yet: say so plainly, give the how-to if it helps, offer a person.
        parts = [texts.STATUS_UNAVAILABLE]
        found = self.knowledge.lookup(text)
        if found.decision is Decision.ANSWER and found.answer:
            parts.append(found.answer)
        return Turn(
            replies=[Reply("\n\n".join(parts), (AGENT, MENU))],
            topic=found.topic,
            details={"intent": "status", "topic": found.topic},
        )

    def _choose(self, option: Option, context: Context) -> Turn:
        kind, _, value = option.value.partition(":")
        if kind == "topic":
            return self._faq(context, self.knowledge.answer_for(value))
        if kind == "audience":
            topics = self.knowledge.topics(value)
            choices = tuple(Option(topic.title, f"topic:{topic.topic}") for topic in topics)
            return Turn(replies=[Reply(texts.PICK_TOPIC, (*choices, AGENT))])
        if value == "agent":
            return self.handoff(HandoffRequest(reason="asked for a person"))
        if value == "menu":
            return self.menu(greeting=False)
        if value == "continue":
            return Turn(replies=[Reply(texts.KEEP_TRYING_REPLY, (MENU,))])
        return self._miss(context, texts.REPHRASE)

    def _faq(self, context: Context, result: FaqResult) -> Turn:
        details: dict[str, object] = {"decision": result.decision.value, "confidence": round(result.confidence, 3)}
        if result.decision is Decision.ANSWER and result.answer:
            details["topic"] = result.topic
            return Turn(replies=[Reply(result.answer)], topic=result.topic, details=details)
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
