"""SayPro support bot: the channel-independent core (messages, dialogue, storage, outbox)."""
