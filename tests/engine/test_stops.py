"""Stop strings on streamed text."""

from __future__ import annotations

from foundry_jupyter.engine.stops import StopFilter


def run(pieces: list[str], stops: tuple[str, ...]) -> tuple[list[str], bool]:
    f = StopFilter(stops)
    out = [f.feed(p) for p in pieces]
    if not f.stopped:
        out.append(f.flush())
    return out, f.stopped


def test_cuts_before_a_stop_split_across_pieces() -> None:
    out, stopped = run(["Hello wo", "rld, then", " END here"], ("END",))
    assert stopped and "".join(out) == "Hello world, then "


def test_holds_back_a_possible_start_then_releases_it() -> None:
    f = StopFilter(("STOP",))
    assert f.feed("abc ST") == "abc "  # "ST" may start "STOP"
    assert f.feed("ART") == "START"  # it did not
    assert not f.stopped


def test_earliest_of_several_stops_wins_and_nothing_follows() -> None:
    f = StopFilter(("b", "xyz"))
    assert f.feed("axyzb") == "a"
    assert f.stopped and f.feed("more") == "" and f.flush() == ""


def test_no_stops_passes_through() -> None:
    out, stopped = run(["a", "b"], ())
    assert out == ["a", "b", ""] and not stopped
