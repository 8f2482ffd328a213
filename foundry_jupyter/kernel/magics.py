"""`%foundry` and `%%foundry`: local models in a notebook.

`%load_ext foundry_jupyter` registers these magics and nothing else (no hooks, no event handlers).
Settings are traitlets: `%config FoundryMagics.default_model = "phi-3.5-mini"`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, needs_local_scope, no_var_expand
from traitlets import Bool, Enum, Float, Int, Unicode, observe

from ..config import DEFAULT_MAX_TOKENS
from ..engine.types import GenerationParams
from ..errors import FoundryError
from . import context, parsing
from .backends import Progress
from .parsing import ChatOptions
from .results import ChatResult, HelpText, History, Notice, Report, Table, hardware_view
from .session import Session
from .streaming import MarkdownStream, TextStream


class FoundryCellError(Exception):
    """A failure shown as one line (IPython renders `_render_traceback_` instead of a traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31mFoundryError\x1b[0m: {self.message}"]


@magics_class
class FoundryMagics(Magics):
    default_model = Unicode("", help="Model used when a cell names none and none is active.").tag(config=True)
    backend = Enum(
        ("auto", "kernel", "server"),
        default_value="auto",
        help="Where models run: the Jupyter server's Foundry service, this kernel, or auto "
        "(the service when the kernel was started by a server with the extension).",
    ).tag(config=True)
    max_tokens = Int(DEFAULT_MAX_TOKENS, help="Most tokens an answer may have, unless a cell says.").tag(
        config=True
    )
    temperature = Float(None, allow_none=True, help="Sampling temperature (None: the model's).").tag(
        config=True
    )
    system_prompt = Unicode("", help="System message for new conversations.").tag(config=True)
    max_updates_per_s = Float(15.0, help="How often a streaming answer is redrawn, at most.").tag(config=True)
    stream_mode = Enum(
        ("auto", "display", "text"),
        default_value="auto",
        help="display: one output updated in place (notebooks); text: printed as it comes (terminals).",
    ).tag(config=True)
    show_progress = Bool(True, help="Show a progress bar while a model downloads.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = Session(backend=self.backend, default_model=self.default_model)
        self.errors = context.ErrorLog(ignore=(FoundryCellError,))
        self.context = context.NotebookContext(shell, self.errors)

    # Config may set traits inside super().__init__, before the session exists: hence getattr.
    @observe("backend")
    def _backend_changed(self, change: dict[str, Any]) -> None:
        session = getattr(self, "session", None)
        if session is None or session.backend_choice == change["new"]:
            return
        if not session.backend_started:
            session.backend_choice = change["new"]
            return
        try:
            session.set_backend(change["new"])
        except FoundryError as err:  # keep the backend that works; say why in one line
            print(f"FoundryError: {err.message}", file=sys.stderr)
            self.backend = session.backend_choice

    @observe("default_model")
    def _default_model_changed(self, change: dict[str, Any]) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            session.default_model = change["new"]

    # -- entry point

    # Braces in a prompt name notebook state (context.py), so IPython's own `{var}` expansion is done
    # here, on the arguments only.
    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    def foundry(self, line: str, cell: str | None = None, local_ns: dict[str, Any] | None = None) -> Any:
        """Local models: `%foundry help` lists the commands; `%%foundry [model]` chats."""
        self.errors.note(self.shell)

        def expand(text: str) -> str:
            return _expand_variables(text, {**self.shell.user_ns, **(local_ns or {})})

        if cell is not None:
            options = parsing.parse_cell(line, self.shell.user_ns, expand)
            prompt = self.context.expand(cell)
            self._guard(lambda: self._chat(prompt, options))  # the answer is on screen already
            return None
        args = parsing.parse_line(line, expand)
        handler: Callable[[argparse.Namespace], Any] = getattr(self, f"_cmd_{args.command}")
        return self._guard(lambda: handler(args))

    def _guard(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except FoundryError as err:
            message = err.message
            if err.code == "context_length_exceeded":
                message += " Start a new conversation: %%foundry --new, or %foundry reset."
            raise FoundryCellError(message) from None

    # -- chat

    def generation_defaults(self) -> GenerationParams:
        return GenerationParams(max_tokens=self.max_tokens, temperature=self.temperature)

    def _in_notebook(self) -> bool:
        if self.stream_mode != "auto":
            return self.stream_mode == "display"
        return getattr(self.shell, "kernel", None) is not None  # ipykernel, not a terminal

    def _sink(self) -> MarkdownStream | TextStream:
        return MarkdownStream(self.max_updates_per_s) if self._in_notebook() else TextStream()

    def _chat(self, prompt: str, options: ChatOptions) -> ChatResult:
        if options.format == "code":
            prompt = f"{prompt.strip()}\n\n{context.CODE_INSTRUCTION}"
        if (
            self.system_prompt
            and not options.system
            and (options.new or not self.session.conversation.messages)
        ):
            options = dataclasses.replace(options, system=self.system_prompt)
        with _ProgressBar(self.show_progress) as progress:
            result = self.session.chat(
                prompt.strip(),
                options,
                defaults=self.generation_defaults(),
                sink=self._sink(),
                progress=progress,
            )
        if options.format == "code" and self.shell is not None:
            # A new cell below, not run (ipykernel sends it as a set_next_input payload).
            self.shell.set_next_input(context.extract_code(result.text), replace=False)
        return result

    def chat(self, prompt: str, **options: Any) -> ChatResult:
        """Scripted chat through this notebook's conversation (no display)."""
        return self.session.chat(prompt, ChatOptions(**options), defaults=self.generation_defaults())

    # -- commands (one handler each)

    def _cmd_run(self, args: argparse.Namespace) -> Any:
        with _ProgressBar(self.show_progress) as progress:
            info = self.session.activate(args.model, progress)
        if not args.prompt:
            if not self._in_notebook():  # a terminal cannot show widgets
                return Notice(
                    f"Active model: {info.id} on {info.execution_provider}. Chat in %%foundry cells."
                )
            from .widgets import ChatWidget

            return ChatWidget(self.session, defaults=self.generation_defaults())
        options = parsing.chat_options(args, model=info.id, format=args.format)
        self._chat(self.context.expand(args.prompt), options)
        return None

    def _cmd_explain(self, args: argparse.Namespace) -> None:
        error = self.errors.last(self.shell)
        if error is None:
            raise FoundryError("no error to explain: no cell has raised one in this kernel")
        options = parsing.chat_options(args, model=args.model, new=args.new)
        self._chat(context.explain_prompt(error), options)

    def _cmd_list(self, args: argparse.Namespace) -> Any:
        from . import api

        return api.catalog_table(args.filter, session=self.session)

    def _cmd_cache(self, args: argparse.Namespace) -> Any:
        from . import api

        return api.cache_table(session=self.session)

    def _cmd_ps(self, args: argparse.Namespace) -> Any:
        from . import api

        return api.loaded_table(session=self.session)

    def _cmd_embed(self, args: argparse.Namespace) -> Any:
        from . import api

        return api.embed_table(args.texts, args.model, dimensions=args.dimensions, session=self.session)

    def _cmd_status(self, args: argparse.Namespace) -> Report:
        return status_report(self)

    def _cmd_hardware(self, args: argparse.Namespace) -> Any:
        if args.widget:
            from .widgets import HardwarePanel

            return HardwarePanel(self.session)
        return hardware_view(self.session.backend.hardware())

    def _cmd_download(self, args: argparse.Namespace) -> Notice:
        from .tables import human_size

        with _ProgressBar(self.show_progress) as progress:
            row = self.session.backend.download(args.model, progress, force=args.force)
        size = human_size(row.get("sizeBytes"))
        return Notice(f"{row['id']} is in the cache ({size}) at {row.get('path')}", row)

    def _cmd_import(self, args: argparse.Namespace) -> Notice:
        row = self.session.backend.import_gguf(args.path, args.alias, args.precision)
        return Notice(f"Imported {args.path} as {row['id']} (alias {row['alias']})", row)

    def _cmd_load(self, args: argparse.Namespace) -> Notice:
        with _ProgressBar(self.show_progress) as progress:
            info = self.session.backend.load(args.model, progress, ep=args.ep)
        return Notice(f"Loaded {info.id} on {info.execution_provider}", info.__dict__)

    def _cmd_unload(self, args: argparse.Namespace) -> Notice:
        model_id = self.session.backend.unload(args.model)
        return Notice(f"Unloaded {model_id}", {"id": model_id})

    def _cmd_remove(self, args: argparse.Namespace) -> Notice:
        model_id = self.session.backend.remove(args.model)
        if self.session.active_model == model_id:
            self.session.active_model = None
        return Notice(f"Removed {model_id} from the cache", {"id": model_id})

    def _cmd_use(self, args: argparse.Namespace) -> Notice:
        entry = self.session.use(args.model)
        return Notice(f"Active model: {self.session.active_model}", entry)

    def _cmd_backend(self, args: argparse.Namespace) -> Notice:
        if args.which:
            self.session.set_backend(args.which)  # fails (one line) when there is no service
            self.backend = args.which
        backend = self.session.backend
        where = backend.describe().get("where", "")
        return Notice(f"Backend: {backend.name} ({where})", {"backend": backend.name})

    def _cmd_history(self, args: argparse.Namespace) -> Any:
        history = History(list(self.session.conversation.messages), self.session.active_model)
        if args.json:
            print(history.to_json())
            return None
        return history

    def _cmd_reset(self, args: argparse.Namespace) -> Notice:
        self.session.reset()
        return Notice("New conversation: the history is empty.")

    def _cmd_picker(self, args: argparse.Namespace) -> Any:
        from .widgets import ModelPicker

        return ModelPicker(self.session)

    def _cmd_help(self, args: argparse.Namespace) -> HelpText:
        return HelpText(parsing.help_text(getattr(args, "topic", None)))


def _expand_variables(text: str, namespace: dict[str, Any]) -> str:
    """IPython's `{var}` / `$var` expansion of magic arguments; text it cannot expand stays as typed."""
    from IPython.utils.text import DollarFormatter

    try:
        return DollarFormatter().vformat(text, args=[], kwargs=namespace)
    except Exception:
        return text


def status_report(magics: FoundryMagics) -> Report:
    session = magics.session
    backend = session.backend
    where = backend.describe()
    loaded = backend.loaded()
    rows: list[tuple[str, Any]] = [
        ("backend", f"{backend.name} (chosen: {session.backend_choice})"),
        ("where", where.get("where")),
        ("cache", where.get("cache")),
        ("active model", session.active_model or f"none (default: {session.default_model or '-'})"),
        ("loaded", [m.get("id") for m in loaded]),
        (
            "conversation",
            f"{session.conversation.turns} turns, {len(session.conversation.messages)} messages",
        ),
        ("max tokens", magics.max_tokens),
    ]
    data = {
        "backend": backend.name,
        "backend_choice": session.backend_choice,
        "active_model": session.active_model,
        "loaded": loaded,
        **where,
    }
    return Report("Foundry", [Table("Status", rows)], data)


class _ProgressBar:
    """A tqdm bar that appears only if bytes really move (a cached model shows nothing)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None

    def __enter__(self) -> Progress | None:
        return self._update if self.enabled else None

    def _update(self, done: int, total: int | None, label: str) -> None:
        if self._bar is None and not (done or total):
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="download")
        if total and self._bar.total != total:
            self._bar.total = total
        if label:
            self._bar.set_description(label[-40:], refresh=False)
        self._bar.update(done - self._bar.n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (and nothing else)."""
    ipython.register_magics(FoundryMagics)


def unload_ipython_extension(ipython: Any) -> None:
    magics = ipython.magics_manager.registry.get("FoundryMagics")
    if magics is not None:
        magics.session.close()
