"""Soak test: mixed, hostile traffic against a real `jupyter server` with the extension, for N seconds.

Starts its own server on 127.0.0.1 (a private cache holding the built-in tiny chat and embedding
models, a private temp folder, a Hugging Face imitation serving one more model, and the server itself
registered as a remote engine, `loop`), then runs `--clients` workers that stream, read whole answers,
cancel mid-stream, drop connections half-sent, load, unload (forced) and unload everything, embed,
send requests through the remote-engine proxy, download from the hub imitation and remove that model
from the cache, while a chaos task SIGKILLs or SIGSTOPs a runner every few seconds. Checks that:

- every request ends with an answer or an OpenAI-shaped error (a 4xx/5xx JSON body, or a final
  `data: {"error": ...}` event), within the runner time limits plus a margin;
- the server's open file descriptors, RSS, child processes and runner temp folders come back to
  their level after the traffic stops (all models unloaded).

    python scripts/soak.py --duration 60 --clients 8 [--json figures.json]

Exit status 0 when every check holds. Traffic goes to 127.0.0.1 only; count and time are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support.hub, the Hugging Face imitation

MODEL = "tiny"
MODEL_ID = "tiny-generic-cpu:1"
EMBED_MODEL = "random-embed"
HUB_MODEL = "tinyhub"  # served by the hub imitation: downloaded and removed again and again
HUB_REPO, HUB_SUB = "org/tiny-onnx", "cpu/tiny"
REMOTE_MODEL = f"loop/{MODEL_ID}"  # the server itself, as a remote engine
RUNNER_TIMEOUT_S = 3.0  # runner_first_token_timeout and runner_token_timeout of the soaked server
START_TIMEOUT_S = 20.0  # runner_start_timeout: a runner stopped while loading holds its load this long
REQUEST_LIMIT_S = 60.0  # no request may take longer than this, whatever the chaos
SERVER_START_S = 300.0  # a niced server on a busy machine can take minutes to answer
LOOP_KEY_ENV = "FOUNDRY_SOAK_LOOP_KEY"
# Descriptors the server may hold beyond its start: log files, and the proxy's kept connections back to
# this same server (the loop engine), both ends of each in the one process.
FD_SLACK = 16
SETTLE_S = 30.0  # after the traffic, how long levels may take to come back
MSG = [{"role": "user", "content": "Tell me about the sea."}]


@dataclass
class Tally:
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    bad: list[str] = field(default_factory=list)
    slowest_s: float = 0.0

    def record(self, action: str, outcome: str, seconds: float, detail: str = "") -> None:
        self.outcomes[f"{action}:{outcome}"] += 1
        self.slowest_s = max(self.slowest_s, seconds)
        if outcome == "bad":
            self.bad.append(f"{action}: {detail}"[:300])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_openai_error(data: Any) -> bool:
    error = data.get("error") if isinstance(data, dict) else None
    return isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error)


class Soak:
    def __init__(self, workdir: Path, clients: int) -> None:
        self.workdir = workdir
        self.clients = clients
        self.tmp = workdir / "tmp"
        self.tmp.mkdir()
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/foundry/"
        self.tally = Tally()
        self.server: subprocess.Popen[bytes] | None = None
        self.samples: list[dict[str, float]] = []
        self.chaos: collections.Counter[str] = collections.Counter()
        self.hub: Any = None

    # ---- the server ----------------------------------------------------------------------------
    def start_server(self) -> None:
        from foundry_jupyter.config import defaults
        from foundry_jupyter.models.manager import ModelManager
        from tests.support.hub import HubServer

        cache = self.workdir / "cache" / "models"
        manager = ModelManager(defaults({"FOUNDRY_JUPYTER_CACHE": str(cache)}))
        tiny = manager.ensure(MODEL)
        manager.ensure(EMBED_MODEL)
        repo = self.workdir / "hub-repo"
        skip = shutil.ignore_patterns("inference_model.json", ".*")  # the cache's own files
        shutil.copytree(tiny.path, repo / HUB_SUB, ignore=skip)
        self.hub = HubServer({HUB_REPO: repo}).start()
        catalog = self.workdir / "catalog.json"
        entry = {
            "name": "tinyhub-generic-cpu",
            "version": 1,
            "alias": HUB_MODEL,
            "publisher": "Test",
            "runtime": {"deviceType": "CPU", "executionProvider": "CPUExecutionProvider"},
            "fileSizeMb": 1,
            "task": "chat-completion",
            "license": "MIT",
            "source": {"kind": "huggingface", "repo": HUB_REPO, "subfolder": HUB_SUB},
        }
        catalog.write_text(json.dumps({"models": [entry]}))
        config_dir = self.workdir / "config"
        config_dir.mkdir()
        # The key by environment variable: a plain-text key in Jupyter config leaves its engine out.
        engine = {
            "name": "loop",
            "base_url": self.url + "v1",
            "api_key_env": LOOP_KEY_ENV,
            # Within the soak's answer limit, as a deployment sets them within its clients' patience.
            "first_byte_timeout": RUNNER_TIMEOUT_S * 4,
            "idle_timeout": RUNNER_TIMEOUT_S * 4,
        }
        foundry = {"catalog_files": [str(catalog)], "remote_engines": [engine]}
        (config_dir / "jupyter_server_config.json").write_text(json.dumps({"FoundryApp": foundry}))
        cmd = [
            sys.executable, "-m", "jupyter_server", "--allow-root", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.workdir}",
            "--ServerApp.jpserver_extensions=foundry_jupyter=True",
            f"--FoundryApp.runner_first_token_timeout={RUNNER_TIMEOUT_S}",
            f"--FoundryApp.runner_token_timeout={RUNNER_TIMEOUT_S}",
            f"--FoundryApp.runner_start_timeout={START_TIMEOUT_S}",
            "--FoundryApp.runner_stop_timeout=2", "--FoundryApp.client_header_timeout=5",
        ]  # fmt: skip
        env = {
            **os.environ,
            "FOUNDRY_JUPYTER_CACHE": str(cache),
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
            "TMPDIR": str(self.tmp),
            "JUPYTER_CONFIG_DIR": str(config_dir),
            "HF_ENDPOINT": self.hub.url,
            LOOP_KEY_ENV: self.token,
        }
        env.pop("HF_HUB_OFFLINE", None)
        log = (self.workdir / "server.log").open("wb")
        self.server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.server.poll() is not None or time.monotonic() > deadline:
                how = f"exited with {self.server.poll()}" if self.server.poll() is not None else "timed out"
                raise SystemExit(f"the server did not start ({how}); see {self.workdir / 'server.log'}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "openai/status", headers=self.headers, timeout=5).status_code == 200:
                    return
            time.sleep(0.3)

    def stop_server(self) -> None:
        if self.hub is not None:
            self.hub.stop()
        if self.server is None or self.server.poll() is not None:
            return
        self.server.send_signal(signal.SIGINT)
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait(timeout=10)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def runner_processes(self) -> list[psutil.Process]:
        assert self.server is not None
        try:
            children = psutil.Process(self.server.pid).children(recursive=True)
        except psutil.Error:
            return []
        found = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                if "foundry_jupyter.runner" in " ".join(child.cmdline()):
                    found.append(child)
        return found

    def sample(self) -> dict[str, float]:
        assert self.server is not None
        server = psutil.Process(self.server.pid)
        figures = {
            "t": time.monotonic(),
            "fds": server.num_fds(),
            "rss_mb": server.memory_info().rss / 2**20,
            "children": len(server.children(recursive=True)),
            "runners": len(self.runner_processes()),
            "temp_dirs": len(list(self.tmp.glob("fj-runner-*"))),
        }
        self.samples.append(figures)
        return figures

    # ---- traffic -------------------------------------------------------------------------------
    async def worker(self, http: httpx.AsyncClient, until: float, rng: random.Random) -> None:
        actions = [
            (self.stream, 30),
            (self.whole, 20),
            (self.cancel, 15),
            (self.half_sent, 8),
            (self.load, 8),
            (self.unload, 6),
            (self.unload_all, 2),
            (self.bad_request, 6),
            (self.embed, 5),
            (self.remote, 8),
            (self.download, 3),
            (self.remove, 2),
        ]
        funcs, weights = zip(*actions, strict=True)
        while time.monotonic() < until:
            action = rng.choices(funcs, weights)[0]
            started = time.monotonic()
            try:
                outcome, detail = await asyncio.wait_for(action(http, rng), REQUEST_LIMIT_S)
            except TimeoutError:
                outcome, detail = "bad", f"no end within {REQUEST_LIMIT_S} s"
            except httpx.TransportError as exc:
                outcome, detail = "bad", f"transport error {exc!r}"
            self.tally.record(action.__name__, outcome, time.monotonic() - started, detail)
            await asyncio.sleep(rng.uniform(0, 0.05))

    def _answer(self, response: httpx.Response) -> tuple[str, str]:
        try:
            data = response.json()
        except ValueError:
            return "bad", f"{response.status_code} not JSON: {response.text[:200]}"
        if response.status_code == 200 and not _is_openai_error(data):
            return "ok", ""
        if response.status_code >= 400 and _is_openai_error(data) and response.status_code != 500:
            return f"error {response.status_code} {data['error']['code']}", ""
        return "bad", f"{response.status_code} {response.text[:200]}"

    def _chat(self, rng: random.Random, stream: bool) -> dict[str, Any]:
        return {
            "model": MODEL,
            "messages": MSG,
            "max_tokens": rng.randint(5, 300),
            "temperature": rng.choice([0, 0.7, 1.0]),
            "stream": stream,
        }

    async def stream(
        self,
        http: httpx.AsyncClient,
        rng: random.Random,
        leave_after: int = 0,
        body: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        events = 0
        last = ""
        body = body or self._chat(rng, True)
        async with http.stream("POST", "v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return self._answer(response)
            async for line in response.aiter_lines():
                if not line:
                    continue
                events += 1
                last = line
                if leave_after and events >= leave_after:
                    return "cancelled", ""
        if last == "data: [DONE]":
            return "ok", ""
        with contextlib.suppress(ValueError):
            if _is_openai_error(json.loads(last.removeprefix("data: "))):
                return f"error event {json.loads(last[6:])['error']['code']}", ""
        return "bad", f"stream ended with {last[:200]!r}"

    async def whole(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        return self._answer(await http.post("v1/chat/completions", json=self._chat(rng, False)))

    async def cancel(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        return await self.stream(http, rng, leave_after=rng.randint(1, 4))

    async def half_sent(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        """A client that sends part of a request (headers, or headers and part of a body) and leaves."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        body = json.dumps(self._chat(rng, rng.random() < 0.5)).encode()
        head = (
            f"POST /foundry/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        writer.write(
            head[: rng.randint(10, len(head))] if rng.random() < 0.5 else head + body[: len(body) // 2]
        )
        await writer.drain()
        await asyncio.sleep(rng.uniform(0, 0.2))
        writer.transport.abort()
        del reader
        return "cancelled", ""

    async def load(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        return self._answer(await http.get(f"openai/load/{MODEL}"))

    async def unload(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        return self._answer(await http.get(f"openai/unload/{MODEL}?force=true"))

    async def unload_all(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        return self._answer(await http.get("openai/unloadall"))

    async def bad_request(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        bodies: list[Any] = [
            {"model": MODEL, "messages": MSG, "stream": "yes"},
            {"model": MODEL, "messages": [{"role": "tool", "content": "x"}]},
            "[" * 5000,
            {"model": "no-such-model", "messages": MSG},
        ]
        body = rng.choice(bodies)
        content = body if isinstance(body, str) else json.dumps(body)
        return self._answer(await http.post("v1/chat/completions", content=content))

    async def embed(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        texts = [f"soak text {rng.random()}" * rng.randint(1, 20) for _ in range(rng.randint(1, 8))]
        return self._answer(await http.post("v1/embeddings", json={"model": EMBED_MODEL, "input": texts}))

    async def remote(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        """A request through the remote-engine proxy (to this same server), streamed or not, at
        times left mid-stream."""
        body = {**self._chat(rng, rng.random() < 0.6), "model": REMOTE_MODEL}
        if not body["stream"]:
            return self._answer(await http.post("v1/chat/completions", json=body))
        return await self.stream(http, rng, leave_after=rng.choice([0, 0, 2]), body=body)

    async def download(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        """Foundry's streamed download from the hub imitation; it must end with its result line."""
        async with http.stream("POST", "openai/download", json={"model": HUB_MODEL}) as response:
            if response.status_code != 200:
                await response.aread()
                return self._answer(response)
            lines = [line async for line in response.aiter_lines() if line]
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            return "bad", f"download ended with {lines[-1:]!r}"
        if result.get("success") is True:
            return "ok", ""
        return ("download failed", "") if result.get("errorMessage") else ("bad", f"result {result!r}")

    async def remove(self, http: httpx.AsyncClient, rng: random.Random) -> tuple[str, str]:
        return self._answer(await http.delete(f"cache/{HUB_MODEL}"))

    async def chaos_monkey(self, until: float, rng: random.Random, every_s: float) -> None:
        """SIGKILL or SIGSTOP a runner process now and then (a stopped one must be replaced)."""
        while time.monotonic() + every_s < until:
            await asyncio.sleep(every_s * rng.uniform(0.5, 1.5))
            runners = self.runner_processes()
            if not runners:
                continue
            victim = rng.choice(runners)
            how = rng.choice([signal.SIGKILL, signal.SIGSTOP])
            with contextlib.suppress(psutil.Error):
                victim.send_signal(how)
                self.chaos[how.name] += 1

    async def sampler(self, until: float) -> None:
        while time.monotonic() < until:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(2.0)

    async def run(self, duration_s: float, seed: int, chaos_every_s: float) -> None:
        rng = random.Random(seed)
        limits = httpx.Limits(max_connections=self.clients * 2)
        timeout = httpx.Timeout(REQUEST_LIMIT_S)
        async with httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=timeout, limits=limits
        ) as http:
            await http.get(f"openai/load/{MODEL}")
            for _ in range(3):  # warm up before the baseline
                await self.whole(http, rng)
            await http.get("openai/unloadall")
            await asyncio.sleep(1.0)
            self.baseline = await asyncio.to_thread(self.sample)
            until = time.monotonic() + duration_s
            tasks = [self.worker(http, until, random.Random(rng.random())) for _ in range(self.clients)]
            tasks.append(self.chaos_monkey(until, random.Random(rng.random()), chaos_every_s))
            tasks.append(self.sampler(until))
            await asyncio.gather(*tasks)
            # Quiet again: every model unloaded, every leftover request ended. Levels come back once
            # the runners being stopped are gone (a stopped one is killed after runner_stop_timeout),
            # and a load that a client left mid-way may still finish and need unloading: wait, bounded.
            deadline = time.monotonic() + SETTLE_S
            while True:
                for runner in self.runner_processes():
                    with contextlib.suppress(psutil.Error):
                        runner.send_signal(signal.SIGCONT)
                await http.get("openai/unloadall")
                await asyncio.sleep(1.0)
                self.final = await asyncio.to_thread(self.sample)
                # Idle kept-alive connections close after client_header_timeout: a leak outlasts it.
                settled = all(self.final[k] <= self.baseline[k] for k in ("children", "temp_dirs")) and (
                    self.final["fds"] <= self.baseline["fds"] + FD_SLACK
                )
                if settled or time.monotonic() > deadline:
                    break

    # ---- verdict -------------------------------------------------------------------------------
    def verdict(self) -> dict[str, Any]:
        base, final = self.baseline, self.final
        peak = {key: max(s[key] for s in self.samples) for key in ("fds", "rss_mb", "children", "temp_dirs")}
        problems = list(self.tally.bad)
        if final["fds"] > base["fds"] + FD_SLACK:
            problems.append(f"file descriptors grew from {base['fds']} to {final['fds']}")
        if final["rss_mb"] > base["rss_mb"] * 1.5 + 50:
            problems.append(f"RSS grew from {base['rss_mb']:.0f} MB to {final['rss_mb']:.0f} MB")
        if final["children"] > base["children"]:
            problems.append(f"child processes grew from {base['children']} to {final['children']}")
        if final["temp_dirs"] > base["temp_dirs"]:
            problems.append(f"runner temp folders grew from {base['temp_dirs']} to {final['temp_dirs']}")
        requests = sum(self.tally.outcomes.values())
        return {
            "ok": not problems,
            "requests": requests,
            "outcomes": dict(sorted(self.tally.outcomes.items())),
            "chaos": dict(self.chaos),
            "slowest_request_s": round(self.tally.slowest_s, 2),
            "baseline": {k: round(v, 1) for k, v in base.items() if k != "t"},
            "peak": {k: round(v, 1) for k, v in peak.items()},
            "final": {k: round(v, 1) for k, v in final.items() if k != "t"},
            "problems": problems[:50],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8, at most 64)")
    parser.add_argument("--chaos-every", type=float, default=5.0, help="seconds between runner kills/stops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (server log, cache)")
    args = parser.parse_args(argv)
    clients = max(1, min(args.clients, 64))
    duration = max(1.0, min(args.duration, 24 * 3600.0))
    workdir = Path(tempfile.mkdtemp(prefix="fj-soak-"))
    soak = Soak(workdir, clients)
    try:
        soak.start_server()
        asyncio.run(soak.run(duration, args.seed, args.chaos_every))
        figures = soak.verdict()
    finally:
        for runner in soak.runner_processes() if soak.server else []:
            with contextlib.suppress(psutil.Error):
                runner.send_signal(signal.SIGCONT)
        soak.stop_server()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    figures["duration_s"] = duration
    figures["clients"] = clients
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
