"""`python -m foundry_jupyter.runner --model-path DIR --socket PATH ...`: host one model.

The server extension starts one of these per loaded model. The socket appears only once the model is
loaded, so a successful connection means "ready". A load failure prints one line starting with
`RUNNER_ERROR ` (a JSON error) on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from ..errors import FoundryError
from ..service import wire


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m foundry_jupyter.runner")
    parser.add_argument("--model-path", required=True, help="the model folder (genai_config.json inside)")
    parser.add_argument("--model-id", default=None, help="the id the model answers to")
    parser.add_argument("--ep", default=None, help="execution provider (default: the best available)")
    parser.add_argument("--socket", required=True, help="unix socket path to listen on")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process is gone")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by N")
    args = parser.parse_args(argv)
    if args.nice:
        # Before onnxruntime starts its threads, which inherit it: the server (and the kernels) then
        # get a core as soon as they wake, while a model keeps both busy.
        os.nice(args.nice)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runner %(levelname)s %(message)s")

    try:
        from ..engine.model import ChatModel

        model = ChatModel.load(args.model_path, ep=args.ep, model_id=args.model_id)
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
        asyncio.run(RunnerServer(model).serve(args.socket, args.parent_pid))
    finally:
        model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
