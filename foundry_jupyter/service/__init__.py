"""Layer 3: OpenAI and Foundry REST semantics as plain functions, runner supervision, TTL."""
