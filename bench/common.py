"""What every part of the load benchmark shares: the one address, the fake provider's credentials,
the phases' request limit and issue 7's targets."""

from __future__ import annotations

HOST = "127.0.0.1"  # every process and every request of this benchmark stays on this address
TELEGRAM_TOKEN = "123456:BENCH-token_for-the-fake"
TELEGRAM_SECRET = "bench-webhook-secret_0123456789"
TWILIO_ACCOUNT_SID = "AC" + "b" * 32
TWILIO_AUTH_TOKEN = "bench-twilio-auth-token"
TWILIO_SMS_NUMBER = "+14155550100"
TWILIO_WHATSAPP_NUMBER = "+14155238886"
# Every phase stops at its time limit or after this many requests, whichever comes first.
MAX_REQUESTS_PER_PHASE = 200_000
TARGETS = {  # issue 7, "Benchmark"
    "capacity_msgs_per_s": 500.0,  # per web process, on PostgreSQL
    "webhook_p99_ms_at_rate": 50.0,  # at 200 messages/s
    "e2e_p99_ms_at_rate": 500.0,  # at 200 messages/s
    "ratio_to_bare": 0.25,
}
