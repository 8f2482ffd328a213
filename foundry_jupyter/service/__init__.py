"""Layer 3: OpenAI and Foundry REST semantics as plain functions, runner supervision, TTL.

- `schemas`: pydantic request models (they validate requests and generate `openapi.json`);
- `openai`, `foundry`: the routes' semantics as async functions; `openapi`: the route table's types
  and the spec built from it;
- `core.FoundryService`: the state the routes share (settings, model manager, runners, downloads);
- `runners`: the supervisor of the loaded models' processes (TTL, eviction, growth, crashes) and its
  client calls; `processes`: one runner process, and how one is started; `wire`: their protocol;
- `downloads`: background download jobs with progress and cancel.
"""
