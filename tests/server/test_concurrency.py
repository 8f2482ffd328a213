"""Many clients at once: nothing lost, and Jupyter's own API keeps answering while models generate."""

from __future__ import annotations

import asyncio
import urllib.request

from .conftest import TINY, runner_processes

MSG = [{"role": "user", "content": "Tell me a story."}]


async def test_eight_clients_25_requests_each_nothing_lost(client, http, service):
    # no explicit load: eight first requests arrive together and must share one new runner

    async def one_client(n: int) -> list[tuple[int, int, str]]:
        results = []
        for i in range(25):
            stream = i % 2 == 0
            if stream:
                chunks = await client.chat.completions.create(
                    model=TINY, messages=MSG, max_tokens=3, seed=n * 100 + i, stream=True
                )
                text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
                results.append((n, i, text))
            else:
                answer = await client.chat.completions.create(
                    model="tiny", messages=MSG, max_tokens=3, seed=n * 100 + i
                )
                assert answer.choices[0].finish_reason in ("stop", "length")
                assert 0 < answer.usage.completion_tokens <= 3
                results.append((n, i, answer.choices[0].message.content))
        return results

    results = await asyncio.wait_for(asyncio.gather(*(one_client(n) for n in range(8))), timeout=240)
    flat = [r for per_client in results for r in per_client]
    assert len(flat) == 200
    assert sorted((n, i) for n, i, _ in flat) == [(n, i) for n in range(8) for i in range(25)]
    assert all(isinstance(text, str) for _, _, text in flat)
    # one model loaded: its first process, and more as the cores allow while all were busy
    runner = service.supervisor.get(TINY)
    for _ in range(200):  # a process started for the last burst may still be loading
        if not runner.growing:
            break
        await asyncio.sleep(0.05)
    assert sorted(p.pid for p in runner_processes()) == sorted(runner.pids)
    assert 1 <= len(runner.pids) <= runner.max_processes
    assert runner.active == 0
    infos = [await service.supervisor.call(runner, {"op": "info"}, p) for p in runner.processes]
    assert sum(i["completed"] for i in infos) == 200 and sum(i["cancelled"] for i in infos) == 0
    # connections are kept between requests: per process at most one per request it ran at once (8),
    # plus its readiness check and this info call; a connection per request would make 200+
    assert sum(i["connections"] for i in infos) <= 10 * len(infos) < 200


async def test_jupyter_api_answers_while_four_streams_run(client, http, base_url, token):
    """/api/status is asked from another thread, as an outside client would: the test's own clients
    share the server's event loop and would measure their own load instead."""
    await http.get("openai/load/tiny")
    started = asyncio.Event()
    first_chunks = 0
    finished = 0

    async def stream_one() -> int:
        nonlocal first_chunks, finished
        chunks = await client.chat.completions.create(
            model=TINY, messages=MSG, max_tokens=900, temperature=0, stream=True
        )
        count = 0
        async for _chunk in chunks:
            count += 1
            if count == 2:
                first_chunks += 1
                if first_chunks == 4:
                    started.set()
        finished += 1
        return count

    def ask_status() -> list[tuple[int, int]]:
        answers = []
        request = urllib.request.Request(
            base_url.removesuffix("foundry/") + "api/status", headers={"Authorization": f"token {token}"}
        )
        for _ in range(3):
            with urllib.request.urlopen(request, timeout=60) as response:
                answers.append((response.status, 4 - finished))
        return answers

    streams = [asyncio.ensure_future(stream_one()) for _ in range(4)]
    await asyncio.wait_for(started.wait(), timeout=60)
    answers = await asyncio.get_running_loop().run_in_executor(None, ask_status)
    counts = await asyncio.wait_for(asyncio.gather(*streams), timeout=120)
    assert [status for status, _ in answers] == [200, 200, 200]
    assert all(c > 2 for c in counts)
    # the first answer came while generation was under way, not after the streams finished
    assert answers[0][1] >= 1
