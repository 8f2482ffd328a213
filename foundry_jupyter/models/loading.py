"""A model in this process: fetched into the cache when missing, then opened with the engine.

The kernel-resident engine and `jupyter foundry model run` both load models this way; the server
loads them in runner processes instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .cache import CachedModel
from .manager import ModelManager

if TYPE_CHECKING:
    from ..engine.model import ChatModel


def fetch(
    manager: ModelManager, name: str, *, progress: Callable[[Any], None] | None = None, force: bool = False
) -> CachedModel:
    """The model on disk, downloaded (or built) first when it is not.

    An interrupt (Ctrl-C, a notebook's Interrupt button) lands in this thread only: it stops the
    transfer's worker threads too, then goes on up as the KeyboardInterrupt it is.
    """
    cancel = threading.Event()
    try:
        return manager.ensure(name, progress=progress, cancel=cancel, force=force)
    except KeyboardInterrupt:
        cancel.set()
        raise


def open_model(manager: ModelManager, cached: CachedModel, ep: str | None = None) -> ChatModel:
    """Load a cached model on `ep`, or on the configured provider when None."""
    from ..engine.model import ChatModel

    return ChatModel.load(cached.path, ep=ep or manager.settings.execution_provider, model_id=cached.id)
