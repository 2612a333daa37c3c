"""The LLM gateway: one interface to every provider, with retries, limits and a ledger."""
