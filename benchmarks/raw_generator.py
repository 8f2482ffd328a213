"""The limit: onnxruntime-genai driven in-process, with no server and no IPC between client and model.

One client uses a plain og.Generator loop; several clients use og.Engine (continuous batching), each
client starting its next request as soon as its last one finishes, as the HTTP clients do. The second
turn of a chat continues the same og.Engine request (its KV cache kept), which is the best a server
that reuses conversations can do.

It runs in its own process (`python -m benchmarks.raw_generator --model-dir DIR`), reading one JSON
job per line on stdin and answering one JSON line per job, so its memory is measured apart and the
benchmark's own Python does not share its GIL.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .clients import conversation, load_messages, long_messages
from .stats import LoadResult, RequestTiming, TurnResult
from .worker import JsonLineWorker

# og.EngineEventFlags bits; the last token of a turn carries TOKEN | TURN_FINISHED.
TOKEN, TURN_FINISHED, FAILED = 1, 2, 4


class RawModel:
    def __init__(self, model_dir: str) -> None:
        import onnxruntime_genai as og

        from foundry_jupyter.engine.model import set_engine_threads

        self.og = og
        # The operator threads our engine gives the same folder, so only the serving differs.
        config = og.Config(model_dir)
        set_engine_threads(config, json.loads((Path(model_dir) / "genai_config.json").read_text()), "cpu")
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)
        self._engine: Any = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = self.og.Engine(self.model)
        return self._engine

    def encode(self, messages: list[dict[str, str]]) -> Any:
        prompt = self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
        return self.tokenizer.encode(prompt)

    def generate(self, messages: list[dict[str, str]], max_tokens: int) -> RequestTiming:
        """One request through a plain og.Generator loop, timed from the chat messages on."""
        og = self.og
        start = time.perf_counter()
        ids = self.encode(messages)
        params = og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=len(ids) + max_tokens)
        generator = og.Generator(self.model, params)
        generator.append_tokens(ids)
        stream = self.tokenizer.create_stream()
        ttft = None
        count = 0
        pieces = []
        while not generator.is_done() and count < max_tokens:
            generator.generate_next_token()
            count += 1
            text = stream.decode(generator.get_next_tokens()[0])
            if text:
                if ttft is None:
                    ttft = time.perf_counter() - start
                pieces.append(text)
        total = time.perf_counter() - start
        del generator
        return RequestTiming(ttft or total, total, count, len(ids), text="".join(pieces))

    def _turn_options(self, request: Any, max_tokens: int) -> Any:
        options = self.og.TurnOptions(request)
        options.set_do_sample(False)
        options.set_max_generated_tokens(max_tokens)
        return options

    def load(self, label: str, clients: int, requests_per_client: int, max_tokens: int) -> LoadResult:
        result = LoadResult(system="raw og", model=label, clients=clients, wall_s=0.0)
        if clients == 1:
            self.generate(load_messages(0, 999), 2)  # warm-up, as the HTTP clients do
            start = time.perf_counter()
            for n in range(requests_per_client):
                result.requests.append(self.generate(load_messages(0, n), max_tokens))
            result.wall_s = time.perf_counter() - start
            return result
        # Warm-up as the HTTP clients do: one short request per client, all at once; the Engine's
        # first batch pays one-time set-up that no later request sees.
        self._engine_load(LoadResult("raw og", label, clients, 0.0), clients, 1, 2)
        self._engine_load(result, clients, requests_per_client, max_tokens)
        return result

    def prompts(self, label: str, words: int, rounds: int, max_tokens: int, salt_base: int) -> LoadResult:
        """Long prompts one at a time through the og.Generator loop (as `clients.run_prompts`)."""
        self.generate(load_messages(0, 999), 2)
        result = LoadResult(system="raw og", model=label, clients=1, wall_s=0.0)
        start = time.perf_counter()
        for r in range(rounds):
            result.requests.append(self.generate(long_messages(salt_base + r, words), max_tokens))
        result.wall_s = time.perf_counter() - start
        return result

    def _engine_load(self, result: LoadResult, clients: int, per_client: int, max_tokens: int) -> None:
        engine = self.engine
        buffer = engine.create_event_buffer(256)
        live: dict[int, dict[str, Any]] = {}  # id(request) -> state
        sent = [0] * clients

        def submit(client: int) -> None:
            state: dict[str, Any] = {"client": client, "start": time.perf_counter(), "ttft": None, "n": 0}
            ids = self.encode(load_messages(client, sent[client] if max_tokens > 2 else 999))
            sent[client] += 1
            request = engine.create_request()
            request.begin_turn(ids, self._turn_options(request, max_tokens))
            state.update(request=request, stream=self.tokenizer.create_stream(), prompt=len(ids))
            live[id(request)] = state

        start = time.perf_counter()
        for client in range(clients):
            submit(client)
        deadline = start + 600
        while live and time.perf_counter() < deadline:
            buffer = engine.run(buffer)
            for event in buffer:
                state = live.get(id(event.request))
                if state is None:
                    continue
                flags = int(event.flags)
                if flags & TOKEN:
                    state["n"] += 1
                    if state["stream"].decode(event.token) and state["ttft"] is None:
                        state["ttft"] = time.perf_counter() - state["start"]
                if flags & (TURN_FINISHED | FAILED):
                    total = time.perf_counter() - state["start"]
                    del live[id(event.request)]
                    if flags & FAILED:
                        result.errors.append(f"og.Engine request failed: {event.error_code}")
                    else:
                        timing = RequestTiming(state["ttft"] or total, total, state["n"], state["prompt"])
                        result.requests.append(timing)
                    event.request.close()
                    if sent[state["client"]] < per_client:
                        submit(state["client"])
        if live:
            result.errors.append(f"{len(live)} og.Engine requests unfinished after 600 s")
        result.wall_s = time.perf_counter() - start

    def _engine_turn(self, request: Any, ids: Any, max_tokens: int) -> tuple[float, list[int]]:
        """Run one turn of `request` to its end: (seconds to the first token, tokens generated)."""
        engine = self.engine
        buffer = engine.create_event_buffer(64)
        start = time.perf_counter()
        request.begin_turn(ids, self._turn_options(request, max_tokens))
        ttft = None
        tokens: list[int] = []
        for _ in range(100 * (max_tokens + len(ids))):  # bounded: a turn never needs more steps
            buffer = engine.run(buffer)
            for event in buffer:
                flags = int(event.flags)
                if flags & TOKEN:
                    ttft = ttft or time.perf_counter() - start
                    tokens.append(event.token)
                if flags & FAILED:
                    raise RuntimeError(f"og.Engine turn failed: {event.error_code}")
                if flags & TURN_FINISHED:
                    return ttft or time.perf_counter() - start, tokens
        raise RuntimeError("og.Engine turn did not finish")

    def second_turn(self, label: str, rounds: int, first_tokens: int, salt_base: int) -> dict[str, Any]:
        import numpy as np

        result = TurnResult(system="raw og", model=label)
        matched = True
        self._engine_turn(
            self.engine.create_request(), self.encode(conversation(salt_base - 1)), 2
        )  # warm-up
        for r in range(rounds):
            salt = salt_base + 2 * r
            request = self.engine.create_request()
            first_ids = np.asarray(self.encode(conversation(salt)), dtype=np.int32)
            _, generated = self._engine_turn(request, first_ids, first_tokens)
            answer = self.tokenizer.decode(np.asarray(generated, dtype=np.int32))
            held = [*first_ids.tolist(), *generated]
            full = self.encode(conversation(salt, answer)).tolist()
            # Continue the held conversation with only the tokens it has not seen.
            matched = matched and full[: len(held)] == held
            warm, _ = self._engine_turn(request, np.asarray(full[len(held) :], dtype=np.int32), 4)
            request.close()
            cold_request = self.engine.create_request()
            cold_ids = self.encode(conversation(salt + 1, answer))
            cold, _ = self._engine_turn(cold_request, cold_ids, 4)
            cold_request.close()
            result.second_turn_ttft_ms.append(warm * 1000)
            result.cold_ttft_ms.append(cold * 1000)
            result.prompt_tokens, result.cold_prompt_tokens = len(full), len(cold_ids)
            result.cached_tokens = len(held)
        out = asdict(result)
        out["prefix_matched"] = matched
        return out


def _worker(model_dir: str) -> None:
    model = RawModel(model_dir)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        op = job.pop("op")
        try:
            if op == "load":
                answer: dict[str, Any] = asdict(model.load(**job))
            elif op == "prompts":
                answer = asdict(model.prompts(**job))
            elif op == "turn":
                answer = model.second_turn(**job)
            else:
                answer = {"error": f"unknown op {op}"}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


class RawProcess(JsonLineWorker):
    """Driver for the worker process."""

    label = "raw og worker"

    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        self.model_dir = model_dir

    def start(self) -> RawProcess:
        cmd = [sys.executable, "-m", "benchmarks.raw_generator", "--model-dir", str(self.model_dir)]
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root)
        self._read()
        return self

    def load(self, label: str, clients: int, requests_per_client: int, max_tokens: int) -> LoadResult:
        data = self.call(
            "load",
            label=label,
            clients=clients,
            requests_per_client=requests_per_client,
            max_tokens=max_tokens,
        )
        requests = [RequestTiming(**r) for r in data.pop("requests")]
        return LoadResult(**data, requests=requests)

    def prompts(self, label: str, words: int, rounds: int, max_tokens: int, salt_base: int) -> LoadResult:
        data = self.call(
            "prompts", label=label, words=words, rounds=rounds, max_tokens=max_tokens, salt_base=salt_base
        )
        requests = [RequestTiming(**r) for r in data.pop("requests")]
        return LoadResult(**data, requests=requests)

    def second_turn(
        self, label: str, rounds: int, first_tokens: int, salt_base: int
    ) -> tuple[TurnResult, bool]:
        data = self.call("turn", label=label, rounds=rounds, first_tokens=first_tokens, salt_base=salt_base)
        matched = data.pop("prefix_matched")
        return TurnResult(**data), matched


def main() -> None:
    parser = argparse.ArgumentParser(description="raw og worker: JSON jobs on stdin, JSON answers on stdout")
    parser.add_argument("--model-dir", required=True)
    _worker(parser.parse_args().model_dir)


if __name__ == "__main__":
    main()
