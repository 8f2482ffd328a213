"""`jupyter foundry model list|info|download|run|register`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InvalidRequest
from ..units import human_size
from . import add_output_option
from .output import print_json, print_table, wants_json
from .progress import model_bars

EXIT_WORDS = ("/exit", "/bye", "/quit", "exit", "quit")


def register(groups: dict[str, Any]) -> None:
    model = groups["model"]

    p = model.add_parser("list", aliases=["ls"], help="list the catalog's models (best variant first)")
    p.add_argument("--filter", metavar="KEY=VALUE", help="device, provider, task or alias (e.g. alias=phi*)")
    add_output_option(p)
    p.set_defaults(func=cmd_list)

    p = model.add_parser("info", help="details of a model, or its license")
    p.add_argument("model", help="alias or model id")
    p.add_argument("--license", action="store_true", help="show the license only")
    add_output_option(p)
    p.set_defaults(func=cmd_info)

    p = model.add_parser("download", help="download a model into the cache")
    p.add_argument("model", help="alias or model id")
    p.add_argument("--force", action="store_true", help="download again even when cached")
    add_output_option(p)
    p.set_defaults(func=cmd_download)

    p = model.add_parser("run", help="chat with a model (downloading it first when needed)")
    p.add_argument("model", help="alias, model id or model folder")
    p.add_argument("prompt", nargs="?", help="answer this prompt and exit (default: interactive chat)")
    p.add_argument("--max-tokens", type=int, default=None, help="most tokens to generate per answer")
    p.add_argument("--temperature", type=float, default=None, help="0 for greedy decoding")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same answer)")
    p.add_argument("--system", default=None, help="a system message")
    p.add_argument("--ep", default=None, help="execution provider (cpu, cuda, dml, ...)")
    add_output_option(p)
    p.set_defaults(func=cmd_run)

    p = model.add_parser("register", help="register a local ONNX GenAI model folder under an alias")
    p.add_argument("folder", help="a folder holding genai_config.json, the onnx files and tokenizer")
    p.add_argument("--alias", required=True, help="the name to use for it")
    add_output_option(p)
    p.set_defaults(func=cmd_register)


def manager() -> Any:
    from ..config import defaults
    from ..models.manager import ModelManager

    return ModelManager(defaults())


def cmd_list(args: argparse.Namespace) -> int:
    from ..models import view

    listing = view.catalog(manager(), args.filter)
    remote = [row for row in remote_catalog_rows() if view.remote_matches(row, args.filter)]
    if wants_json(args):
        print_json({"models": [entry.to_foundry(cached=cached) for entry, cached in listing] + remote})
        return 0
    rows = []
    previous = None
    for e, cached in listing:
        task = e.task.removesuffix("-completion") + (", tools" if e.supports_tool_calling else "")
        size = human_size(e.file_size_mb * 1_000_000) if e.file_size_mb else ""
        rows.append(
            [
                e.alias if e.alias != previous else "",
                e.device,
                task,
                size,
                e.license or "",
                "yes" if cached else "",
                e.id,
            ]
        )
        previous = e.alias
    headers = ["Alias", "Device", "Task", "File Size", "License", "Cached", "Model ID"]
    if remote:  # an engine's model: no file, no licence here; its engine, health and latency instead
        headers += ["Engine", "Health"]
        rows = [[*row, "", ""] for row in rows]
        rows += [
            [
                r["alias"],
                r["runtime"]["deviceType"],
                r["task"].removesuffix("-completion"),
                "",
                "",
                "remote",
                r["id"],
                r["engine"],
                _health(r),
            ]
            for r in remote
        ]
    if not rows:
        print("No models match." if args.filter else "The catalog is empty.")
        return 0
    print_table(headers, rows)
    return 0


def remote_catalog_rows() -> list[dict[str, Any]]:
    """Catalog rows of the engines in engines.json, each engine asked for its models now."""
    from ..config import defaults
    from ..models import view
    from ..models.engines import EngineFile, fetch_listings

    engines = EngineFile(defaults().engines_file).load()
    listings = fetch_listings(engines)
    return [
        row for e, found in zip(engines, listings, strict=True) for row in view.remote_catalog_rows(e, found)
    ]


def _health(row: dict[str, Any]) -> str:
    latency = row.get("latencyMs")
    return row["health"] + (f", {latency:.0f} ms" if latency is not None else "")


def remote_model(m: Any, name: str) -> Any:
    """The engine model `name` means (`ENGINE/MODEL` or an engine alias), None for other names; an
    engine alias a local model also answers to is refused, as the server does."""
    from ..config import defaults
    from ..errors import FoundryError, ModelNotFound
    from ..models.engines import EngineFile, alias_conflict, find_model

    hit = find_model(name, EngineFile(defaults().engines_file).load())
    if hit is not None and hit.alias:
        try:
            m.resolve(hit.alias)
        except ModelNotFound:
            return hit
        except FoundryError:
            pass
        raise alias_conflict(hit.alias, hit.engine.name, "a local model")
    return hit


def _remote_info(args: argparse.Namespace, hit: Any) -> int:
    from ..models import view
    from ..models.engines import fetch_listing

    listing = fetch_listing(hit.engine)
    known = next((m for m in listing.models if m.get("id") == hit.model), {"id": hit.model})
    listing.models = [known]
    row = view.remote_catalog_rows(hit.engine, listing)[0]
    if wants_json(args):
        print_json(row)
        return 0
    rows = [
        ("Model ID", row["id"]),
        ("Alias", row["alias"]),
        ("Device", row["runtime"]["deviceType"]),
        ("Engine", f"{row['engine']} at {row['uri']}"),
        ("Health", _health(row)),
        ("Context length", row["contextLength"] or "unknown"),
    ]
    _print_fields(rows)
    return 0


def _print_fields(rows: list[tuple[str, object]]) -> None:
    """`key  value` lines, the values lined up."""
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


def cmd_info(args: argparse.Namespace) -> int:
    m = manager()
    if (hit := remote_model(m, args.model)) is not None:
        return _remote_info(args, hit)
    entry = m.resolve(args.model)
    path = m.local_path(entry.id)
    if args.license:
        if wants_json(args):
            print_json(
                {"id": entry.id, "license": entry.license, "licenseDescription": entry.license_description}
            )
        else:
            print(f"{entry.id}: {entry.license or 'no license given'}")
            if entry.license_description:
                print(entry.license_description)
        return 0
    data = entry.to_foundry(cached=path is not None)
    data["path"] = str(path) if path else None
    if wants_json(args):
        print_json(data)
        return 0
    rows = [
        ("Model ID", entry.id),
        ("Alias", entry.alias),
        ("Name", entry.display_name or entry.name),
        ("Publisher", entry.publisher),
        ("Device", entry.device),
        ("Execution provider", entry.execution_provider),
        ("Task", entry.task),
        ("File size", f"{entry.file_size_mb} MB" if entry.file_size_mb else "unknown"),
        ("Context length", entry.context_length or "unknown"),
        ("Tool calling", "yes" if entry.supports_tool_calling else "no"),
        ("License", entry.license or "unknown"),
        ("Source", entry.uri),
        ("Cached", str(path) if path else "no"),
    ]
    _print_fields(rows)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    m = manager()
    entry = m.resolve(args.model)
    already = m.local_path(entry.id)
    if already is not None and not args.force:
        model = m.ensure(entry.id)
        if wants_json(args):
            print_json({**model.to_dict(), "downloaded": False})
        else:
            print(f"{entry.id} is already in the cache at {model.path}. To download it again, use --force.")
        return 0
    bar = model_bars(entry, args)
    try:
        model = m.download(entry.id, force=args.force, progress=bar)
    finally:
        bar.close()
    if wants_json(args):
        print_json({**model.to_dict(), "downloaded": True})
    else:
        print(f"Downloaded {model.id} ({human_size(model.size_bytes)}) to {model.path}")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    m = manager()
    entry = m.register(args.folder, args.alias)
    if wants_json(args):
        print_json(entry.to_foundry(cached=True))
    else:
        print(f"Registered {entry.source.path} as {entry.alias} ({entry.id}, {entry.execution_provider})")  # type: ignore[union-attr]
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ..engine.types import GenerationParams
    from ..models import loading

    if args.max_tokens is not None and args.max_tokens < 1:
        raise InvalidRequest("--max-tokens must be at least 1")
    if args.temperature is not None and args.temperature < 0:
        raise InvalidRequest("--temperature must be 0 or more")
    m = manager()
    params = GenerationParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    chat: Any
    if (hit := remote_model(m, args.model)) is not None:  # the engine answers; nothing to fetch
        from .remote import RemoteChat

        chat, model_id = RemoteChat(hit.engine, hit.model), args.model
    else:
        entry = m.resolve(args.model)
        cached = m.is_cached(entry)
        if not cached:
            verb = "Building" if entry.source.kind == "builtin" else "Downloading"
            print(f"{verb} {entry.id} ...", file=sys.stderr)
        bar = model_bars(entry, args, cached=cached)
        try:
            model = loading.fetch(m, args.model, progress=bar)
        finally:
            bar.close()
        chat, model_id = loading.open_model(m, model, args.ep), model.id
    try:
        messages: list[dict[str, Any]] = []
        if args.system:
            messages.append({"role": "system", "content": args.system})
        if args.prompt is not None:
            messages.append({"role": "user", "content": args.prompt})
            if wants_json(args):
                done = chat.complete_chat(messages, params)
                print_json(
                    {
                        "model": model_id,
                        "executionProvider": chat.execution_provider,
                        "text": done.text,
                        **({"reasoning": done.reasoning} if done.reasoning else {}),
                        "finishReason": done.finish_reason,
                        "usage": done.usage.to_dict(),
                    }
                )
            else:
                _stream_answer(chat, messages, params)
            return 0
        if wants_json(args):
            raise InvalidRequest("--output json needs a prompt: jupyter foundry model run <model> <prompt>")
        return _interactive(chat, messages, params, model_id)
    finally:
        chat.close()


def _stream_answer(chat: Any, messages: list[dict[str, Any]], params: Any) -> str:
    """Stream the answer to stdout; a reasoning model's thinking goes to stderr, so stdout stays the
    answer alone. Returns the answer (what the conversation keeps)."""
    parts = []
    thinking = False
    for delta in chat.stream_chat(messages, params):
        if delta.reasoning:
            sys.stderr.write(("" if thinking else "[thinking]\n") + delta.reasoning)
            sys.stderr.flush()
            thinking = True
        if delta.text:
            if thinking:
                sys.stderr.write("\n[/thinking]\n")
                sys.stderr.flush()
                thinking = False
            sys.stdout.write(delta.text)
            sys.stdout.flush()
            parts.append(delta.text)
    if thinking:
        sys.stderr.write("\n[/thinking]\n")
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)


def _interactive(chat: Any, messages: list[dict[str, Any]], params: Any, model_id: str) -> int:
    tty = sys.stdin.isatty()
    if tty:
        print(f"Chatting with {model_id} on {chat.execution_provider}. Type /exit or press Ctrl-D to leave.")
    while True:
        try:
            line = input("> " if tty else "")
        except EOFError:
            if tty:
                print()
            return 0
        text = line.strip()
        if not text:
            continue
        if text.lower() in EXIT_WORDS:
            return 0
        messages.append({"role": "user", "content": text})
        answer = _stream_answer(chat, messages, params)
        messages.append({"role": "assistant", "content": answer})
