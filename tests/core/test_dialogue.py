"""The dialogue, step by step, as conversations over a predictable knowledge base."""

from __future__ import annotations

import re

from sqlalchemy import select

from core.messages import Attachment
from core.storage.models import ChannelIdentity


def test_a_greeting_shows_what_the_bot_can_do(fake_bot) -> None:  # type: ignore[no-untyped-def]
    said = fake_bot.say("Hi there!")
    assert "support assistant" in said
    assert "1. I run a campaign" in said and "4. Talk to a person" in said


def test_help_and_menu_show_the_menu(fake_bot) -> None:  # type: ignore[no-untyped-def]
    for word in ("help", "MENU", "Menu?"):
        assert "Here's what I can help with" in fake_bot.say(word)


def test_picking_an_audience_by_number_lists_its_topics_and_a_topic_answers(fake_bot) -> None:  # type: ignore[no-untyped-def]
    fake_bot.say("menu")
    said = fake_bot.say("2")
    assert "Which of these" in said and "1. Getting a refund" in said
    assert "Ask for a refund" in fake_bot.say("Getting a refund")


def test_a_question_gets_the_faq_answer(fake_bot) -> None:  # type: ignore[no-untyped-def]
    assert "Payouts are sent after the campaign ends" in fake_bot.say("when do i get my payout")


def test_an_unsure_match_asks_back_with_the_likeliest_topics(fake_bot) -> None:  # type: ignore[no-untyped-def]
    said = fake_bot.say("something refundish")
    assert "Did you mean" in said
    assert said.options == [] and "1. Getting a refund\n2. Contacting support\n3. Something else" in said
    assert "Ask for a refund" in fake_bot.say("1")


def test_two_misses_in_a_row_offer_a_person_and_yes_opens_a_ticket(fake_bot) -> None:  # type: ignore[no-untyped-def]
    assert "don't know" in fake_bot.say("what is the meaning of life")
    said = fake_bot.say("what about the universe")
    assert "Would you like me to pass you to a person" in said
    said = fake_bot.say("yes")
    reference = re.search(r"SP-[A-Z0-9]{6}", said.text)
    assert reference is not None
    assert [ticket.reference for ticket in fake_bot.tickets()] == [reference.group(0)]


def test_a_hit_between_misses_resets_the_count(fake_bot) -> None:  # type: ignore[no-untyped-def]
    fake_bot.say("what is the meaning of life")
    fake_bot.say("when is my payout")
    assert "pass you to a person" not in fake_bot.say("what about the universe")


def test_declining_the_offer_keeps_the_bot(fake_bot) -> None:  # type: ignore[no-untyped-def]
    fake_bot.say("asdf")
    fake_bot.say("qwerty")
    assert "keep going" in fake_bot.say("no")
    assert fake_bot.tickets() == []


def test_asking_for_a_person_opens_a_ticket_and_says_how_to_reach_support(fake_bot) -> None:  # type: ignore[no-untyped-def]
    said = fake_bot.say("this is useless, I want a human")
    [ticket] = fake_bot.tickets()
    assert ticket.reference in said and ticket.reason == "asked for a person"
    # No desk is connected in this version: the bot says so and gives the contact details.
    assert "can't take over chats here yet" in said and "support@example.org" in said
    assert fake_bot.conversation().state == "bot"


def test_asking_twice_reuses_the_open_ticket(fake_bot) -> None:  # type: ignore[no-untyped-def]
    fake_bot.say("agent")
    fake_bot.say("talk to a human")
    assert len(fake_bot.tickets()) == 1


def test_with_a_desk_the_conversation_waits_for_an_agent_and_the_bot_goes_quiet(database) -> None:  # type: ignore[no-untyped-def]
    from tests.fakes.bot import ScriptedBot
    from tests.fakes.knowledge import FakeKnowledge

    class OpenDesk:
        def accepts_handoffs(self) -> bool:
            return True

    bot = ScriptedBot(database, FakeKnowledge(), desk=OpenDesk())
    said = bot.say("agent please")
    assert "A person will reply here" in said
    assert bot.conversation().state == "waiting_for_agent"
    assert bot.say("when is my payout").text == ""
    assert "won't get any more updates" in bot.say("STOP")


def test_stop_and_start_opt_out_and_back_in(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    assert "Send START" in fake_bot.say("STOP")
    assert _opted_out(database)
    assert "subscribed to SayPro updates again" in fake_bot.say("start")
    assert not _opted_out(database)


def test_thanks_and_goodbye_are_answered(fake_bot) -> None:  # type: ignore[no-untyped-def]
    assert "You're welcome" in fake_bot.say("thanks so much!")
    assert "Goodbye" in fake_bot.say("bye")


def test_a_status_question_without_a_reference_asks_for_it(fake_bot) -> None:  # type: ignore[no-untyped-def]
    said = fake_bot.say("where is my payout? I want to track it")
    assert "Please send me the reference of the payout" in said and "SP-PAY-1042" in said
    assert "1. Talk to a person" in said
    assert fake_bot.conversation().status_step == "reference"


def test_a_record_reference_is_a_status_question(fake_bot) -> None:  # type: ignore[no-untyped-def]
    # No SMS or e-mail channel is live here, so no code can be sent: the bot says so, and offers a person.
    said = fake_bot.say("DSB-48213")
    assert "can't send you a verification code" in said and "1. Talk to a person" in said


def test_words_that_merely_start_like_a_reference_are_questions_for_the_faq(fake_bot) -> None:  # type: ignore[no-untyped-def]
    for text in ("how does a contribution work", "registration form problem", "discount please"):
        assert "can't send you a verification code" not in fake_bot.say(text)
        assert fake_bot.conversation().status_step is None


def test_an_attachment_without_text_is_kept_and_acknowledged(fake_bot) -> None:  # type: ignore[no-untyped-def]
    said = fake_bot.say(
        "", attachments=(Attachment(url="https://files.example.org/receipt.jpg", content_type="image/jpeg"),)
    )
    assert "kept your file" in said


def test_a_failure_inside_the_dialogue_is_answered_with_an_apology(fake_bot) -> None:  # type: ignore[no-untyped-def]
    assert "something went wrong on my side" in fake_bot.say("boom")
    assert "Payouts are sent" in fake_bot.say("ok and my payout?")


def _opted_out(database) -> bool:  # type: ignore[no-untyped-def]
    with database.sessions() as session:
        identity = session.scalars(select(ChannelIdentity)).one()
        return identity.opted_out_at is not None


def test_where_the_carrier_answers_stop_the_bot_records_it_silently(database) -> None:  # type: ignore[no-untyped-def]
    from core.messages import Capabilities
    from tests.fakes.bot import ScriptedBot
    from tests.fakes.knowledge import FakeKnowledge

    bot = ScriptedBot(database, FakeKnowledge())
    bot.channel.capabilities = Capabilities(carrier_opt_out=True)
    assert bot.say("STOP").text == ""
    assert _opted_out(database)
