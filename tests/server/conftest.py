"""A real Jupyter server with the extension, the tiny model in its cache, and clients for it.

Every test gets its own copy of the cache, a token-protected server on 127.0.0.1, and a check that
no runner process outlives it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from traitlets.config import Config

TINY = "tiny-generic-cpu:1"
LONG = "tiny-long-generic-cpu:1"  # in the cache of tests marked long_model


def runner_processes() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "foundry_jupyter.runner" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    leftovers = runner_processes()
    for proc in leftovers:
        proc.kill()
    psutil.wait_procs(leftovers, timeout=10)
    if leftovers:
        pytest.fail(f"{len(leftovers)} runner process(es) outlived the server: {[p.pid for p in leftovers]}")


@pytest.fixture(autouse=True)
def _restore_service_env(monkeypatch):
    """The extension exports its URL and token into os.environ; later tests must not see a dead one."""
    from foundry_jupyter import config

    monkeypatch.delenv(config.ENV_SERVICE_URL, raising=False)
    monkeypatch.delenv(config.ENV_SERVICE_TOKEN, raising=False)


@pytest.fixture(params=["unix", "tcp"])
def each_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once per runner transport (`FoundryApp.runner_transport` reads the variable): the
    runner, lifecycle and fault tests use it through `pytestmark`."""
    from foundry_jupyter import config

    monkeypatch.setenv(config.ENV_RUNNER_TRANSPORT, request.param)
    return request.param


@pytest.fixture(scope="session")
def tiny_long_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 4096-token context, as a cached model folder.

    Its answers match tiny's, but a 4,000-token answer takes seconds rather than half of one: tests that
    act on a stream while it runs (kill the runner, leave, unload) need it still running, however fast
    the machine.
    """
    from foundry_jupyter.engine.testmodel import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny-long") / "tiny-long-generic-cpu-1"
    build_tiny_model(folder, context_length=4096)
    (folder / "inference_model.json").write_text(json.dumps({"Name": LONG}))
    return folder


@pytest.fixture
def foundry_cache(tiny_cache_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    cache = tmp_path / "cache" / "models"
    shutil.copytree(tiny_cache_dir, cache)
    if request.node.get_closest_marker("long_model"):
        long_dir = request.getfixturevalue("tiny_long_dir")
        shutil.copytree(long_dir, cache / "foundry-jupyter" / long_dir.name)
    return cache


@pytest.fixture
def foundry_config() -> dict:
    """Extra `FoundryApp` settings; tests override this fixture to change them."""
    return {}


@pytest.fixture
def jp_server_config(foundry_cache: Path, foundry_config: dict) -> Config:
    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {"foundry_jupyter": True, "jupyter_server_terminals": False},
                "allow_unauthenticated_access": False,
            },
            "FoundryApp": {"cache_dir": str(foundry_cache), "runner_stop_timeout": 5.0, **foundry_config},
        }
    )


@pytest.fixture
def server(jp_serverapp, http_server):
    """The running ServerApp (requesting `http_server` makes it really listen)."""
    return jp_serverapp


@pytest.fixture
def base_url(server, jp_http_port: int, jp_base_url: str) -> str:
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}foundry/"


@pytest.fixture
def token(server) -> str:
    return server.identity_provider.token


@pytest.fixture
def http(base_url: str, token: str, jp_asyncio_loop):
    """An httpx client on the service root, authenticated with the Jupyter token."""
    client = httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(60.0)
    )
    yield client
    jp_asyncio_loop.run_until_complete(client.aclose())


@pytest.fixture
def anon(base_url: str, jp_asyncio_loop):
    """An httpx client without credentials."""
    client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0))
    yield client
    jp_asyncio_loop.run_until_complete(client.aclose())


@pytest.fixture
def client(base_url: str, token: str, jp_asyncio_loop):
    """The real OpenAI client, pointed at the service."""
    client = openai.AsyncOpenAI(base_url=base_url + "v1", api_key=token, max_retries=0, timeout=60.0)
    yield client
    jp_asyncio_loop.run_until_complete(client.close())


@pytest.fixture
def service(server):
    return server.web_app.settings["foundry_service"]
