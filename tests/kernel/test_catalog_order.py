"""`%foundry list` keeps the catalog's best-first order within an alias, as the sidebar groups it."""

from __future__ import annotations

from foundry_jupyter.kernel.tables import catalog_frame, catalog_rows


def _entry(name: str, alias: str, device: str) -> dict:
    provider = {"GPU": "CUDAExecutionProvider", "CPU": "CPUExecutionProvider"}[device]
    return {"name": name, "alias": alias, "runtime": {"deviceType": device, "executionProvider": provider}}


def test_aliases_sorted_variants_in_the_servers_order() -> None:
    entries = [  # the server's order: aliases sorted, best variant first; local imports at the end
        _entry("phi-cuda-gpu:1", "phi", "GPU"),
        _entry("phi-generic-cpu:1", "phi", "CPU"),
        _entry("zeta-generic-cpu:2", "Zeta", "CPU"),
        _entry("zeta-generic-cpu:1", "Zeta", "CPU"),
        _entry("alpha-local:1", "alpha", "CPU"),
    ]
    frame = catalog_frame(catalog_rows(entries))
    assert list(frame["id"]) == [
        "alpha-local:1",
        "phi-cuda-gpu:1",
        "phi-generic-cpu:1",
        "zeta-generic-cpu:2",
        "zeta-generic-cpu:1",
    ]
