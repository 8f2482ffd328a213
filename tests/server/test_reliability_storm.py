"""Disconnect storms: when many streaming clients drop at once, the runners stop working for them
within about a second, instead of keeping a core busy for nobody."""

from __future__ import annotations

import asyncio
import time
import warnings

import httpx
import psutil
import pytest

from .conftest import LONG, runner_processes

MSG = [{"role": "user", "content": "Tell me a long story."}]
CLIENTS = 30
# The clients leave once every stream has begun (or its request ended without one), or after this long
# with those that did begin: a slow, shared machine then storms with fewer, instead of failing.
START_WITHIN_S = 120.0


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


async def runner_counts(service) -> dict[str, int]:
    """What the runner processes themselves count: generations running now, and those stopped because
    their client left."""
    totals = {"active": 0, "cancelled": 0}
    for runner in service.supervisor.loaded():
        for process in list(runner.processes):
            info = await service.supervisor.call(runner, {"op": "info"}, process)
            totals["active"] += info["active"]
            totals["cancelled"] += info["cancelled"]
    return totals


@pytest.mark.long_model
@pytest.mark.timeout(300)
async def test_runners_go_quiet_soon_after_every_client_left(base_url, token, service):
    body = {"model": LONG, "messages": MSG, "max_tokens": 4000, "temperature": 1.0, "stream": True}
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CLIENTS + 5)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=300, limits=limits) as http:
        assert (await http.get(f"openai/load/{LONG}")).status_code == 200
        leave = asyncio.Event()
        settled = [asyncio.Event() for _ in range(CLIENTS)]  # its stream began, or its request ended
        streaming = 0
        failures: list[str] = []

        async def one(settled: asyncio.Event) -> None:
            nonlocal streaming
            try:
                async with http.stream("POST", "v1/chat/completions", json=body) as response:
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {(await response.aread())[:200]!r}")
                        return
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            streaming += 1
                            settled.set()
                            await leave.wait()
                            return  # leaving the block closes the connection: all at once
                    failures.append("a stream that ended without an event")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            finally:
                settled.set()

        clients = [asyncio.ensure_future(one(event)) for event in settled]
        try:
            waits = [asyncio.ensure_future(event.wait()) for event in settled]
            await asyncio.wait(waits, timeout=START_WITHIN_S)
            for wait in waits:
                wait.cancel()
            assert streaming, f"no stream began within {START_WITHIN_S:g} s: {failures[:3]}"
            before = await runner_counts(service)
            assert before["active"] >= 1, "the runners had nothing running before the clients left"
        finally:
            leave.set()
            await asyncio.gather(*clients, return_exceptions=True)
    left_at = time.monotonic()
    if failures:
        warnings.warn(f"{len(failures)} of {CLIENTS} requests had no stream: {failures[:3]}", stacklevel=1)
    await asyncio.sleep(1.0)
    cpu = await asyncio.to_thread(runners_cpu, 1.0)
    after = time.monotonic() - left_at
    assert cpu < 0.15, f"runners still used {cpu:.2f} cores {after:.1f} s after the clients left"
    # The runners themselves stopped every generation of the clients that left, and the model still serves.
    now = await runner_counts(service)
    assert now["active"] == 0, f"the runners still run {now['active']} generation(s) for clients that left"
    assert now["cancelled"] > before["cancelled"]
    for runner in service.supervisor.loaded():
        assert runner.active == 0
