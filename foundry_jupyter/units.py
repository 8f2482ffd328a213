"""Human-readable quantities, shared by the CLI, the magics and the widgets."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(num_bytes: int | float | None) -> str:
    """1536 -> '1.5 KiB'; None -> ''."""
    if num_bytes is None:
        return ""
    value = float(num_bytes)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
