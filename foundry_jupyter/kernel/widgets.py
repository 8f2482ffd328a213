"""Notebook widgets from stock ipywidgets (no custom JavaScript): model picker, hardware panel, chat.

Each widget works on the notebook's `Session`, so what it loads or activates is what the `%%foundry`
cells use, and the chat widget continues the cells' conversation.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..engine.types import GenerationParams
from ..errors import FoundryError
from .parsing import ChatOptions
from .results import hardware_view
from .session import Session
from .tables import catalog_rows, human_size

_ERROR_STYLE = "color:#b00020"


def _message(text: str, error: bool = False) -> str:
    style = f" style='{_ERROR_STYLE}'" if error else ""
    return f"<span{style}>{html.escape(text)}</span>"


class ModelPicker(widgets.VBox):
    """Catalog and cache in one view, with buttons to download, load, unload, remove and use a model."""

    def __init__(self, session: Session, **kwargs: Any) -> None:
        self.session = session
        self.rows: list[dict[str, Any]] = []
        self.choice = widgets.Dropdown(description="Model", layout=widgets.Layout(width="auto"))
        self.table = widgets.HTML()
        self.download_button = widgets.Button(description="Download", icon="download")
        self.load_button = widgets.Button(description="Load", icon="play")
        self.unload_button = widgets.Button(description="Unload", icon="stop")
        self.remove_button = widgets.Button(description="Remove", icon="trash", button_style="danger")
        self.use_button = widgets.Button(description="Use", icon="check", button_style="primary")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description="Download")
        self.progress.layout.visibility = "hidden"
        self.status = widgets.HTML()
        self.download_button.on_click(lambda _: self._act(self._download))
        self.load_button.on_click(lambda _: self._act(self._load))
        self.unload_button.on_click(lambda _: self._act(self._unload))
        self.remove_button.on_click(lambda _: self._act(self._remove))
        self.use_button.on_click(lambda _: self._act(self._use))
        self.refresh_button.on_click(lambda _: self._act(lambda: ""))
        self.choice.observe(lambda _: self._sync_buttons(), names="value")
        buttons = widgets.HBox(
            [
                self.download_button,
                self.load_button,
                self.unload_button,
                self.remove_button,
                self.use_button,
                self.refresh_button,
            ]
        )
        super().__init__([self.table, self.choice, buttons, self.progress, self.status], **kwargs)
        self.refresh()

    # -- state

    def refresh(self) -> None:
        backend = self.session.backend
        loaded = [m["id"] for m in backend.loaded()]
        self.rows = catalog_rows(backend.catalog(), loaded)
        current = self.choice.value
        self.choice.options = [(self._label(r), r["id"]) for r in self.rows]
        ids = [r["id"] for r in self.rows]
        if current in ids:
            self.choice.value = current
        elif ids:
            self.choice.value = ids[0]
        self.table.value = self._table_html()
        self._sync_buttons()

    def selected(self) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["id"] == self.choice.value), None)

    def _label(self, row: dict[str, Any]) -> str:
        state = "loaded" if row["loaded"] else "cached" if row["cached"] else "not downloaded"
        return f"{row['alias']} · {row['id']} · {row['device']} · {human_size(row['size_bytes'])} · {state}"

    def _table_html(self) -> str:
        head = "".join(
            f"<th>{h}</th>" for h in ("alias", "id", "device", "size", "cached", "loaded", "active")
        )
        body = []
        for r in self.rows:
            cells = (
                r["alias"],
                r["id"],
                r["device"],
                human_size(r["size_bytes"]),
                "yes" if r["cached"] else "",
                "yes" if r["loaded"] else "",
                "★" if r["id"] == self.session.active_model else "",
            )
            body.append("<tr>" + "".join(f"<td>{html.escape(str(c or ''))}</td>" for c in cells) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    def _sync_buttons(self) -> None:
        row = self.selected()
        self.download_button.disabled = row is None or row["cached"]
        self.load_button.disabled = row is None or row["loaded"]
        self.unload_button.disabled = row is None or not row["loaded"]
        self.remove_button.disabled = row is None or not row["cached"]
        self.use_button.disabled = row is None or row["id"] == self.session.active_model

    # -- actions

    def _act(self, action: Callable[[], str]) -> None:
        for button in (self.download_button, self.load_button, self.unload_button, self.remove_button):
            button.disabled = True
        try:
            message = action()
            self.status.value = _message(message) if message else ""
        except FoundryError as err:
            self.status.value = _message(err.message, error=True)
        finally:
            self.progress.layout.visibility = "hidden"
            self.refresh()

    def _on_progress(self, done: int, total: int | None, label: str) -> None:
        self.progress.layout.visibility = "visible"
        self.progress.value = done / total if total else 0.0
        self.progress.description = "Download"
        if label:
            self.status.value = _message(f"downloading {label}")

    def _download(self) -> str:
        row = self.session.backend.download(self._model(), self._on_progress)
        return f"{row['id']} is in the cache ({human_size(row.get('sizeBytes'))})"

    def _load(self) -> str:
        info = self.session.backend.load(self._model(), self._on_progress)
        return f"Loaded {info.id} on {info.execution_provider}"

    def _unload(self) -> str:
        return f"Unloaded {self.session.backend.unload(self._model())}"

    def _remove(self) -> str:
        model_id = self.session.backend.remove(self._model())
        if self.session.active_model == model_id:
            self.session.active_model = None
        return f"Removed {model_id} from the cache"

    def _use(self) -> str:
        self.session.active_model = self._model()
        return f"Active model: {self.session.active_model}"

    def _model(self) -> str:
        if not self.choice.value:
            raise FoundryError("no model chosen")
        return str(self.choice.value)


class HardwarePanel(widgets.VBox):
    """CPU, memory, GPUs and execution providers, and which variant an alias would pick here."""

    def __init__(self, session: Session, **kwargs: Any) -> None:
        self.session = session
        self.summary = widgets.HTML()
        self.alias = widgets.Text(
            placeholder="alias, e.g. phi-3.5-mini", description="Alias", continuous_update=False
        )
        self.resolve_button = widgets.Button(description="Which variant?", icon="search")
        self.variant = widgets.HTML()
        self.resolve_button.on_click(lambda _: self._resolve())
        self.alias.observe(lambda _: self._resolve(), names="value")  # Enter or leaving the box
        super().__init__(
            [self.summary, widgets.HBox([self.alias, self.resolve_button]), self.variant], **kwargs
        )
        self.refresh()

    def refresh(self) -> None:
        self.report = self.session.backend.hardware()
        self.summary.value = hardware_view(self.report)._repr_html_()

    def _resolve(self) -> None:
        name = self.alias.value.strip()
        if not name:
            self.variant.value = _message("type an alias first", error=True)
            return
        try:
            entry = self.session.backend.resolve(name)
        except FoundryError as err:
            self.variant.value = _message(err.message, error=True)
            return
        runtime = entry.get("runtime") or {}
        model_id = entry.get("name") or entry.get("id")
        state = "cached" if entry.get("cached") else "not downloaded"
        self.variant.value = _message(
            f"{name} -> {model_id} ({runtime.get('deviceType')}, {runtime.get('executionProvider')}, {state})"
        )


class ChatWidget(widgets.VBox):
    """An input box, a streaming answer and a stop button, on the notebook's conversation."""

    def __init__(
        self,
        session: Session,
        defaults: GenerationParams | None = None,
        max_updates_per_s: float = 15.0,
        **kwargs: Any,
    ) -> None:
        self.session = session
        self.defaults = defaults or GenerationParams()
        self._interval = 1.0 / max_updates_per_s if max_updates_per_s > 0 else 0.0
        self.transcript = widgets.HTML()
        self.answer = widgets.HTML()
        self.input = widgets.Textarea(placeholder="Ask something…", layout=widgets.Layout(width="100%"))
        self.send_button = widgets.Button(description="Send", icon="paper-plane", button_style="primary")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.status = widgets.HTML()
        self.thread: threading.Thread | None = None
        self.last_result: Any = None
        self._cancel = threading.Event()
        self._last_draw = float("-inf")
        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self.stop())
        controls = widgets.HBox([self.send_button, self.stop_button])
        super().__init__([self.transcript, self.answer, self.input, controls, self.status], **kwargs)
        self._draw_transcript()

    def send(self) -> None:
        prompt = self.input.value.strip()
        if not prompt:
            self.status.value = _message("type a message first", error=True)
            return
        if self.thread is not None and self.thread.is_alive():
            return
        self._cancel = threading.Event()
        self.send_button.disabled = True
        self.stop_button.disabled = False
        self.input.value = ""
        self.answer.value = _bubble("user", prompt)
        self.status.value = _message(
            f"answering with {self.session.active_model or self.session.default_model}"
        )
        # Generation runs in a thread so that the Stop button's click can reach the kernel meanwhile.
        self.thread = threading.Thread(target=self._generate, args=(prompt,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float = 60.0) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _generate(self, prompt: str) -> None:
        try:
            result = self.session.chat(
                prompt, ChatOptions(), defaults=self.defaults, cancel=self._cancel, on_text=self._on_text
            )
            self.last_result = result
            self.status.value = _message(result.footer())
        except FoundryError as err:
            self.status.value = _message(err.message, error=True)
        finally:
            self.answer.value = ""
            self._draw_transcript()
            self.send_button.disabled = False
            self.stop_button.disabled = True

    def _on_text(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_draw >= self._interval:
            self._last_draw = now
            self.answer.value = _bubble("assistant", text)

    def _draw_transcript(self) -> None:
        messages = [m for m in self.session.conversation.messages if m.get("role") != "system"]
        self.transcript.value = "".join(_bubble(m["role"], str(m.get("content", ""))) for m in messages)


def _bubble(role: str, text: str) -> str:
    return (
        f"<div><strong>{html.escape(role)}</strong>"
        f"<div style='white-space:pre-wrap'>{html.escape(text)}</div></div>"
    )
