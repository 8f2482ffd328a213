"""Backend rows -> pandas DataFrames: sizes in bytes and in human form, times as pandas Timestamps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..units import human_size

if TYPE_CHECKING:
    import pandas as pd

# The catalog and the cache tables open alike: which model, where it runs, how large it is.
MODEL_COLUMNS = ("alias", "id", "device", "execution_provider", "size_bytes", "size")
# A remote engine's models (device "remote") fill these; local models leave them empty.
REMOTE_COLUMNS = ("engine", "health", "latency_ms")
CATALOG_COLUMNS = (
    *MODEL_COLUMNS,
    "version",
    "task",
    "context_length",
    "license",
    "cached",
    "loaded",
    *REMOTE_COLUMNS,
)
CACHE_COLUMNS = (*MODEL_COLUMNS, "last_used", "path", *REMOTE_COLUMNS)
LOADED_COLUMNS = (
    "alias",
    "id",
    "execution_provider",
    "memory_bytes",
    "memory",
    "ttl_seconds",
    "ttl_remaining",
    "pid",
)


def _timestamp(value: Any) -> Any:
    import pandas as pd

    if value is None or value == "":
        return pd.NaT
    if isinstance(value, (int, float)):
        return pd.Timestamp(value, unit="s", tz="UTC")
    if isinstance(value, datetime) and value.tzinfo is None:
        return pd.Timestamp(value).tz_localize("UTC")
    return pd.Timestamp(value).tz_convert("UTC") if pd.Timestamp(value).tzinfo else pd.Timestamp(value)


def _frame(rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd

    records = [{c: row.get(c) for c in columns} for row in rows]
    frame = pd.DataFrame.from_records(records, columns=list(columns))
    for size_col, human_col in (("size_bytes", "size"), ("memory_bytes", "memory")):
        if size_col in frame.columns:
            frame[size_col] = frame[size_col].astype("Int64")
            frame[human_col] = [human_size(v) if pd.notna(v) else "" for v in frame[size_col]]
    return frame


def catalog_rows(
    entries: Iterable[Mapping[str, Any]], loaded_ids: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """`/foundry/list` entries (Foundry's field names) as flat rows."""
    loaded = set(loaded_ids)
    rows = []
    for e in entries:
        runtime = e.get("runtime") or {}
        size_mb = e.get("fileSizeMb")
        model_id = e.get("name") or e.get("id")
        rows.append(
            {
                "alias": e.get("alias"),
                "id": model_id,
                "device": runtime.get("deviceType"),
                "execution_provider": runtime.get("executionProvider"),
                "size_bytes": int(size_mb) * 1024 * 1024 if size_mb is not None else None,
                "version": str(e.get("version") or ""),
                "task": e.get("task"),
                "context_length": e.get("contextLength"),
                "license": e.get("license"),
                "cached": bool(e.get("cached")),
                "loaded": model_id in loaded,
                **_remote(e),
            }
        )
    return rows


def cache_rows(models: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`GET foundry/cache` models (camelCase) as flat rows."""
    return [
        {
            "alias": m.get("alias"),
            "id": m.get("id"),
            "device": m.get("device"),
            "execution_provider": m.get("executionProvider"),
            "size_bytes": m.get("sizeBytes"),
            "last_used": m.get("lastUsed"),
            "path": m.get("path"),
            **_remote(m),
        }
        for m in models
    ]


def loaded_rows(models: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`GET foundry/loaded` models (camelCase) as flat rows."""
    return [
        {
            "alias": m.get("alias"),
            "id": m.get("id"),
            "execution_provider": m.get("executionProvider"),
            "memory_bytes": m.get("memoryBytes"),
            "ttl_seconds": _whole(m.get("ttlSeconds")),
            "ttl_remaining": _whole(m.get("ttlRemaining")),
            "pid": m.get("pid"),
        }
        for m in models
    ]


def _remote(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"engine": row.get("engine"), "health": row.get("health"), "latency_ms": row.get("latencyMs")}


def _whole(value: Any) -> int | None:
    return None if value is None else round(float(value))


def catalog_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    frame = _frame(rows, CATALOG_COLUMNS)
    for col in ("cached", "loaded"):
        frame[col] = frame[col].fillna(False).astype(bool)
    frame["context_length"] = frame["context_length"].astype("Int64")
    # By alias only: within an alias the catalog's best-first order stays, as the sidebar shows it.
    return frame.sort_values("alias", key=lambda a: a.str.lower(), kind="stable", ignore_index=True)


def cache_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frame = _frame(rows, CACHE_COLUMNS)
    frame["last_used"] = pd.Series([_timestamp(v) for v in frame["last_used"]], dtype="datetime64[ns, UTC]")
    return frame.sort_values(["alias", "id"], kind="stable", ignore_index=True)


def loaded_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    frame = _frame(rows, LOADED_COLUMNS)
    for col in ("ttl_seconds", "ttl_remaining", "pid"):
        frame[col] = frame[col].astype("Int64")
    return frame.sort_values(["id"], kind="stable", ignore_index=True)
