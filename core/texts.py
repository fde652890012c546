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

# --- The status of a user's own payout, contribution, contest entry or campaign (core.status) ---
# An unverified asker and a reference that does not exist get the same words: keep them free of
# anything that depends on the record.

ASK_REFERENCE = (
    "Sure, I can check that. Please send me the reference of the {what}: it's in your SayPro "
    "account and on the e-mails we sent you, and looks like *{example}*."
)
REFERENCE_WHAT = {
    "disbursement": ("payout", "SP-PAY-1042"),
    "contribution": ("contribution", "SP-DON-1042"),
    "registration": ("contest entry", "SP-ENTRY-1042"),
    "campaign": ("campaign", "SP-CAMP-1042"),
    None: ("payout, contribution or contest entry", "SP-PAY-1042"),
}
WHICH_ONE = "Which one do you mean?"
CODE_SENT = (
    "I can only share these details with the person they belong to. If this reference is yours, "
    "a code is on its way to the phone or email on its record. Type the 6-digit code here when it "
    "arrives; it works for 10 minutes."
)
CODES_UNAVAILABLE = (
    "I can only share these details with the person they belong to, and I can't send you a "
    "verification code from here right now. A person from our support team can check it with you."
)
CODE_RIGHT = "Thanks, that's the right code. Next time you ask here, you won't need one."
CODE_WRONG = (
    "That code isn't right. Please check the latest code we sent and type it again. After 5 wrong "
    "codes, checking this reference is locked for an hour."
)
CODE_EXPIRED = "That code is no longer valid (codes work for 10 minutes). Send me the reference again for a new one."
LOCKED = (
    "Too many wrong codes were typed for this reference, so checking it here is locked for an hour. "
    "A person from our support team can help you in the meantime."
)
RATE_LIMITED = (
    "You've checked several references in a short time, so I've paused look-ups for a while. "
    "Please try again later, or ask for a person."
)
# The one-time code itself, and what is kept of it once sent (the code never stays in the database).
CODE_MESSAGE = "Your SayPro verification code is {code}. It works for 10 minutes. Never share it: SayPro staff will never ask for it."
CODE_MESSAGE_REDACTED = "Your SayPro verification code is ●●●●●● (removed once sent)."
CODE_TYPED_REDACTED = "●●●●●● (a one-time code, not kept)"

METHOD = {"bank_transfer": "bank transfer", "paypal": "PayPal", "mobile_money": "mobile money"}
DESTINATION = {
    "bank_transfer": "the bank account ending {last4}",
    "paypal": "the PayPal account ending {last4}",
    "mobile_money": "the mobile money number ending {last4}",
}
DESTINATION_UNKNOWN = {
    "bank_transfer": "your bank account",
    "paypal": "your PayPal account",
    "mobile_money": "your mobile money number",
}
YOUR_CAMPAIGN = "your campaign"
PAYOUT_HEAD = "Payout *{reference}* for *{title}*: {net} ({amount} minus {fees} fees), by {method}."
PAYOUT = {
    "pending_kyc": "It's waiting for your identity check (KYC). Please upload {documents} in your SayPro account; we schedule the payout as soon as they're approved.",
    "scheduled": "It's scheduled{expected}.",
    "processing": "It's being processed{expected}.",
    "sent": "It was sent to {destination} on {paid}. Depending on your bank, it can take a few business days to show.",
    "received": "It was paid into {destination} on {paid}.",
    "failed": "The payment failed{reason}. To fix it, check the payout details in your SayPro account (account holder, account number and branch code, or your PayPal or mobile money number) and correct them; we send it again once they're right.",
    "on_hold": "It's on hold while our team reviews it{reason}.",
}
PAYOUT_EXPECTED = " for {date}"
PAYOUT_EXPECTED_BY = ", expected by {date}"
PAYOUT_LATE = "It was expected by {date} and is late. I'm sorry about that: I've asked our team to look into it first."
KYC_DOCUMENTS = "the identity documents requested in your account's verification step"
SINCE = " on {date}"
REASON = ": {reason}"

CONTRIBUTION_HEAD = "Contribution *{reference}* of {amount} to *{title}*:"
CONTRIBUTION = {
    "succeeded": "the payment went through. Thank you for backing it!",
    "failed": "the payment didn't go through, so you weren't charged. If your bank shows an amount, it's a hold they release. You can try again on the campaign page.",
    "refund_requested": "your refund was requested{since} and is being processed.",
    "refunded": "it was refunded{since}. It can take a few business days to show on your statement.",
    "charged_back": "your bank reversed the payment (a chargeback){since}. Our team needs to look at this with you.",
}
REFUND_ASKED = "You asked for a refund{since}; our team is handling it under reference *{ticket}*."
REFUND_POLICY = "Backers can get a refund when a campaign is cancelled or doesn't reach its goal."
REFUND_QUALIFIES = "This campaign {why}, so you can ask for a refund."
REFUND_WHY = {"cancelled": "was cancelled", "failed": "didn't reach its goal"}
REFUND_RECORDED = "Your contribution *{reference}* of {amount} qualifies, because the campaign {why}. I've recorded your refund request."
REFUND_NOT_QUALIFYING = (
    "Your contribution *{reference}* is to a campaign that {state}, so it doesn't qualify for a refund "
    "on those grounds. If something went wrong with it, a person from our team can look at your case."
)
ASK_FOR_REFUND = "Ask for a refund"

REGISTRATION_HEAD = "Entry *{reference}* for *{contest}*:"
REGISTRATION_LINES = "- Registration: {status}\n- Entry fee: {fee}\n- Submission: {submission}"
REGISTRATION_STATUS = {
    "pending": "pending",
    "confirmed": "confirmed",
    "registered": "confirmed",
    "cancelled": "cancelled",
    "withdrawn": "withdrawn",
}
FEE = {
    "paid": "paid",
    "pending": "not paid yet: pay it on your entry page to complete your registration",
    "unpaid": "not paid yet: pay it on your entry page to complete your registration",
    "failed": "the payment failed: please try again on your entry page",
    "refunded": "refunded",
    "waived": "waived",
}
SUBMISSION = {
    "not_submitted": "not submitted yet",
    "received": "received",
    "under_review": "received and being judged",
    "accepted": "accepted",
    "disqualified": "disqualified",
}
DEADLINE_AHEAD = "You have until {date} to submit."
DEADLINE = "The deadline is {date}."
DEADLINE_PASSED = "The deadline passed on {date}."
DISQUALIFIED = "If you think this is a mistake, you can appeal: a person from our team can help."

CAMPAIGN_HEAD = "Campaign *{reference}*, *{title}*:"
CAMPAIGN = {
    "active": "it's live and has raised {raised} so far.",
    "ended": "it has ended, having raised {raised}.",
    "cancelled": "it was cancelled, having raised {raised}. Backers can ask for a refund.",
    "failed": "it didn't reach its goal (it raised {raised}). Backers can ask for a refund; a person from our team can talk you through what happens next.",
}
CAMPAIGN_STATE = {
    "active": "is still running",
    "ended": "ended as planned",
    "cancelled": "was cancelled",
    "failed": "didn't reach its goal",
}
CAMPAIGN_PAYOUT = "- Payout *{reference}*: {status}"
PAYOUT_SHORT = {
    "pending_kyc": "waiting for your identity check",
    "scheduled": "scheduled",
    "processing": "being processed",
    "sent": "sent",
    "received": "paid",
    "failed": "failed",
    "on_hold": "on hold",
}

# Proactive updates when the platform changes a status (core.proactive); {when} is "today",
# "yesterday" or "on Friday 5 December 2026".
NOTIFY_PAYOUT = {
    "pending_kyc": "Your payout of {net} for {title} is waiting for your identity documents.",
    "scheduled": "Your payout of {net} for {title} is scheduled{expected}.",
    "processing": "Your payout of {net} for {title} is being processed.",
    "sent": "Your payout of {net} for {title} was sent by {method} {when}.",
    "received": "Your payout of {net} for {title} was paid into {destination} {when}.",
    "failed": "Your payout of {net} for {title} could not be paid{reason}. Reply here and I'll tell you how to fix it.",
    "on_hold": "Your payout of {net} for {title} is on hold while our team reviews it.",
}
NOTIFY_CONTRIBUTION = {
    "succeeded": "Your contribution of {amount} to {title} went through. Thank you!",
    "failed": "Your contribution of {amount} to {title} didn't go through, so you weren't charged.",
    "refund_requested": "Your refund of {amount} for {title} is being processed.",
    "refunded": "Your contribution of {amount} to {title} was refunded {when}.",
    "charged_back": "Your contribution of {amount} to {title} was reversed by your bank. Reply here if you'd like a person to help.",
}
NOTIFY_CAMPAIGN = "Your campaign {title} {state}. It raised {raised}."
NOTIFY_ENTRY = "Your entry for {contest}: {field} {value}."
NOTIFY_ENTRY_FIELD = {"submission_status": "submission", "fee_status": "entry fee", "status": "registration"}
NOTIFY_REFERENCE = " (Reference {reference}.)"

# --- The human desk (core.desk, core.desk_actions): what the user is told ---

WAIT_OPEN = "Someone usually answers within {target}."
WAIT_CLOSED = "Our team is away right now; they're back {when} and will answer you then."
REOPENED = (
    "I've reopened your request *{reference}* and passed your message to our support team. A person will reply here."
)
AGENT_REPLY = "**{name}** (SayPro support): {text}"
RESOLVED_RATE = (
    "Our support team has marked your request *{reference}* as resolved. How would you rate the help you got, "
    "from 1 (poor) to 5 (excellent)? You can add a comment after the number. If something is still wrong, "
    "just write here in the next 7 days and we'll pick it up again."
)
RATING_LABELS = ("1 (poor)", "2", "3", "4", "5 (excellent)")
ASK_COMMENT = "Thank you! Is there anything you'd like to tell us about it? Write it here, or tap *No comment*."
NO_COMMENT = "No comment"
RATING_THANKS = "Thank you for your feedback. Write any time if you need us again."
BACK_TO_BOT = (
    "Our support team has handed you back to me, SayPro's assistant. Ask me anything, type *menu* to see "
    "what I can help with, or ask for a person again."
)
INCIDENT_BANNER = "⚠️ **Service notice:** {text}"
ANNOUNCEMENT = "📣 **SayPro:** {text}\n\n(Reply STOP to stop these messages.)"

# --- The human desk: what the agents' channel is told (Markdown; the Slack sender converts it) ---

DESK_USER_WROTE = "**{name}:** {text}"
DESK_ATTACHMENT = "📎 [{name}]({url})"
DESK_ASKED_AGAIN = "🙋 {name} asked for a person again ({reason})."
DESK_REOPENED = "🔁 **Reopened**: {name} wrote again within 7 days of the resolution."
DESK_CLAIMED = "🙋 Claimed by **{agent}**."
DESK_TAKEN_OVER = "🙋 **{agent}** took over from {previous}."
DESK_RESOLVED = "✅ Resolved by **{agent}**. The user was asked for a rating."
DESK_BACK_TO_BOT = "↩️ Handed back to the bot by **{agent}**."
DESK_RATED = "⭐ {name} rated the help **{score}/5**."
DESK_COMMENTED = "💬 {name}'s comment: {comment}"
DESK_SENT = "✓ Sent to {name} on {channel}."
DESK_SENT_TEMPLATE = "✓ Sent to {name} on {channel} as the approved template (the 24-hour window had closed)."
DESK_NOT_DELIVERED = "✗ **Not delivered** to {name}: {reason}."
DESK_WINDOW_CLOSED = (
    "WhatsApp's 24-hour window closed at {closed} and no template for agent replies is set "
    "(WHATSAPP_AGENT_REPLY_TEMPLATE), so WhatsApp would refuse it. It goes through once the user writes again"
)
DESK_NOT_ACTIVE = "✗ **Not sent**: {reference} is {status}. It reopens when the user writes to us again."
DESK_EDITED = "✎ An edit to a reply that was already sent is not passed on: the user still has the first version."
DESK_DELETED = "🗑 Deleting a reply here does not unsend it: the user still has it."
DESK_NOT_MEMBER = "⛔ A reply from {name} was not passed on: only members of the agents' channel can answer users."
DESK_NOTE = "📝 **Note from {agent}:** {text}"
DESK_FILES_NOT_SENT = "📎 Files are not passed on to the user: paste a link to a shared file instead."
DESK_SLA_REMINDER = (
    "⏰ {reference}: 80% of the {target} first-response target has gone and nobody has answered yet (due at {due})."
)
DESK_SLA_BREACH = (
    "🚨 {reference} missed its {target} first-response target. Priority is now **{priority}**. Can someone take it?"
)
DESK_INCIDENT_SET = "🚨 **{agent}** set the incident note. The bot now puts it above its answers:\n> {text}"
DESK_INCIDENT_CLEARED = "✅ **{agent}** cleared the incident note."
DESK_ANNOUNCED = "📣 **{agent}** sent an announcement to {people}{template}{skipped}:\n> {text}"
