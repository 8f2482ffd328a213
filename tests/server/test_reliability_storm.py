"""Disconnect storms: when 50 streaming clients drop at once, the runners stop working for them
within about a second, instead of keeping a core busy for nobody."""

from __future__ import annotations

import asyncio
import time

import httpx
import psutil
import pytest

from .conftest import LONG, runner_processes

MSG = [{"role": "user", "content": "Tell me a long story."}]
CLIENTS = 50


def runners_cpu(seconds: float) -> float:
    """CPU the runner processes used over the next `seconds`, in cores."""
    procs = runner_processes()
    before = {p.pid: sum(p.cpu_times()[:2]) for p in procs}
    time.sleep(seconds)
    used = 0.0
    for p in procs:
        try:
            used += sum(p.cpu_times()[:2]) - before[p.pid]
        except psutil.Error:
            continue
    return used / seconds


@pytest.mark.long_model
@pytest.mark.timeout(420)  # 50 streams on a shared CPU can take minutes to all start
async def test_runners_go_quiet_soon_after_every_client_left(base_url, token, service):
    body = {"model": LONG, "messages": MSG, "max_tokens": 4000, "temperature": 1.0, "stream": True}
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CLIENTS + 5)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=300, limits=limits) as http:
        assert (await http.get(f"openai/load/{LONG}")).status_code == 200
        streaming = asyncio.Event()
        started = 0

        async def one() -> None:
            nonlocal started
            async with http.stream("POST", "v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        started += 1
                        if started == CLIENTS:
                            streaming.set()
                        await streaming.wait()
                        return  # leaving the block closes the connection: all at once

        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(CLIENTS))), timeout=300)
    left_at = time.monotonic()
    await asyncio.sleep(1.0)
    cpu = await asyncio.to_thread(runners_cpu, 1.0)
    after = time.monotonic() - left_at
    assert cpu < 0.15, f"runners still used {cpu:.2f} cores {after:.1f} s after the clients left"
    # Every generation was stopped, and the model still serves.
    for runner in service.supervisor.loaded():
        assert runner.active == 0
