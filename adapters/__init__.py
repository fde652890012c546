"""Channel adapters: each turns a provider's request into inbound messages and sends outbound ones."""
