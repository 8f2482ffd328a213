"""`python -m foundry_jupyter.runner --model-path DIR (--socket PATH | --tcp-port-file PATH) ...`:
host one model.

The server extension starts one of these per loaded model. It listens on a unix socket, or on a free
port of 127.0.0.1 that it writes to the port file; either appears only once the model is loaded, so a
successful connection means "ready". Over TCP every connection must first present the secret the server
put in $FOUNDRY_JUPYTER_RUNNER_SECRET. A load failure prints one line starting with `RUNNER_ERROR `
(a JSON error) on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any

from ..errors import FoundryError
from ..service import transport, wire
from ..service.processes import lower_priority
from .parent import watch_parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m foundry_jupyter.runner")
    parser.add_argument("--model-path", required=True, help="the model folder (genai_config.json inside)")
    parser.add_argument("--model-id", default=None, help="the id the model answers to")
    parser.add_argument("--ep", default=None, help="execution provider (default: the best available)")
    listen = parser.add_mutually_exclusive_group(required=True)
    listen.add_argument("--socket", help="unix socket path to listen on")
    listen.add_argument(
        "--tcp-port-file",
        help="listen on a free port of 127.0.0.1 and write it to this file; clients must present the "
        f"secret given in ${transport.SECRET_ENV}",
    )
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process is gone")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by N")
    args = parser.parse_args(argv)
    secret = os.environ.pop(transport.SECRET_ENV, "")  # not passed on to anything this process starts
    if args.tcp_port_file and len(secret) != transport.SECRET_HEX_CHARS:
        parser.error(f"--tcp-port-file needs the runner's secret in ${transport.SECRET_ENV}")
    if args.nice:
        # Before onnxruntime starts its threads, which inherit it: the server (and the kernels) then
        # get a core as soon as they wake, while a model keeps both busy.
        lower_priority(args.nice)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runner %(levelname)s %(message)s")
    watch_parent(args.parent_pid)  # before loading, which can take minutes

    try:
        model = _load(args.model_path, args.ep, args.model_id)
    except FoundryError as exc:
        print(wire.ERROR_PREFIX + json.dumps(wire.error_to_wire(exc)), file=sys.stderr, flush=True)
        return 2
    except Exception as exc:
        logging.exception("loading the model failed")
        message = f"loading the model failed: {type(exc).__name__}: {exc}"
        print(wire.ERROR_PREFIX + json.dumps({"class": "RunnerFailed", "message": message}), file=sys.stderr)
        return 2

    from .serve import RunnerServer

    try:
        server = RunnerServer(model)
        asyncio.run(server.serve(args.socket, port_file=args.tcp_port_file, secret=secret))
    finally:
        model.close()
    return 0


def _load(path: str, ep: str | None, model_id: str | None) -> Any:
    """A `ChatModel`, or an `EmbeddingModel` for a folder that holds an embedding model."""
    from ..engine.embeddings import EmbeddingModel, is_embedding_folder

    if is_embedding_folder(path):
        return EmbeddingModel.load(path, ep=ep, model_id=model_id)
    from ..engine.model import ChatModel

    return ChatModel.load(path, ep=ep, model_id=model_id)


if __name__ == "__main__":
    sys.exit(main())
