"""Layer 3: OpenAI and Foundry REST semantics as plain functions, runner supervision, TTL.

- `schemas`: pydantic request models (they validate requests and generate `openapi.json`);
- `openai`, `foundry`: the routes' semantics as async functions; `openapi`: the spec;
- `core.FoundryService`: the state the routes share (settings, model manager, runners, downloads);
- `runners`: one process per loaded model, its client calls, idle TTL; `wire`: their protocol;
- `downloads`: background download jobs with progress and cancel.
"""
