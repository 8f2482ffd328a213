"""`GET foundry/zip-logs`: the sidebar's diagnostics download, authenticated, without the server's token."""

from __future__ import annotations

import io
import json
import zipfile

from .conftest import TINY


async def test_zip_logs_route_answers_a_zip_without_the_token(http, anon, token):
    assert (await http.get(f"openai/load/{TINY}")).status_code == 200
    response = await http.get("zip-logs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert 'filename="foundry-logs-' in response.headers["content-disposition"]
    assert token.encode() not in response.content
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        files = {name: archive.read(name).decode() for name in archive.namelist()}
    assert all(token not in text for text in files.values())
    loaded = json.loads(files["loaded.json"])
    assert [m["id"] for m in loaded["models"]] == [TINY]
    assert any(name.startswith("logs/fj-runner-") for name in files)  # the loaded model's runner log
    assert json.loads(files["status.json"])["loadedModels"] == [TINY]
    assert (await anon.get("zip-logs")).status_code in (401, 403)
