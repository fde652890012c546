"""Everything the bot itself says (FAQ answers live in knowledge/), in one place to review and translate."""

from __future__ import annotations

TALK_TO_PERSON = "Talk to a person"
MAIN_MENU = "Main menu"
KEEP_TRYING = "Keep trying with the bot"
SOMETHING_ELSE = "Something else"
AUDIENCE_ORGANISER = "I run a campaign"
AUDIENCE_BACKER = "I backed a campaign"
AUDIENCE_PARTICIPANT = "I entered a contest"

GREETING = (
    "Hi! I'm SayPro's support assistant. I can answer questions about campaign payouts, "
    "donations and refunds, and contests, or put you through to a person.\n\n"
    "Ask me anything in your own words, or pick one of these:"
)
MENU = (
    "Here's what I can help with: campaign payouts, donations and refunds, contest entries, "
    "or a person from our support team. Ask in your own words, or pick one:"
)
PICK_TOPIC = "Which of these is your question?"
WELCOME = "You're welcome! Anything else I can help with? Type *menu* to see the options."
GOODBYE = "Goodbye, and thank you for contacting SayPro. Write any time if you need us again."
STOPPED = (
    "You won't get any more updates or announcements from SayPro here. You can still ask me "
    "questions at any time. Send START to receive updates again."
)
STARTED = "You're subscribed to SayPro updates again. Send STOP at any time to opt out."
EMPTY = "I didn't receive any text. Type your question, or *menu* to see what I can help with."
NO_WORDS = "I can only read words, not pictures or emoji. Please type your question in a few words."
ATTACHMENT_ONLY = (
    "Thanks, I've kept your file with this conversation. I can only read text, so please tell me "
    "in words what you need, or ask for a person."
)
TOO_LONG = (
    "That's a long message. I've kept all of it with this conversation, but I understand short "
    "questions best: please send your question in a sentence or two, or ask for a person."
)
DID_YOU_MEAN = "I'm not sure I understood. Did you mean one of these?"
REPHRASE = "Could you ask it in other words? A short sentence works best."
DONT_KNOW = (
    "Sorry, I don't know the answer to that. I can help with campaign payouts, donations and "
    "refunds, and contests. Try asking in other words, see the menu, or ask for a person."
)
OFFER_PERSON = "I'm sorry, I'm not getting this right. Would you like me to pass you to a person?"
KEEP_TRYING_REPLY = "OK, let's keep going. Ask your question in other words, or type *menu*."
STATUS_UNAVAILABLE = (
    "I can't look up the status of your own payout, refund or contest entry in this chat yet. "
    "A person from our support team can check it for you."
)
HANDED_OFF = (
    "I've passed your conversation to our support team. Your reference number is *{reference}*. "
    "A person will reply here."
)
NO_DESK = (
    "I've recorded your request with reference number *{reference}*. Our support team can't "
    "take over chats here yet, so please contact them directly and quote that number:"
)
SOMETHING_WENT_WRONG = (
    "Sorry, something went wrong on my side and I couldn't answer that. Your message is saved. "
    "Please try again in a moment, or ask for a person."
)
