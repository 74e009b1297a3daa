"""The comparison "a resumed result equals an uninterrupted one in every column" (issue 17, item 1)."""

from __future__ import annotations

import json
from typing import Any

#: measured, not computed: wall time (checked separately, within a tolerance) and memory peaks
MEASURED = ("wall_time_s", "peak_memory_allocated", "peak_memory_reserved", "peak_rss")
#: differ by design: where a result came from
PROVENANCE = ("resumed_from", "segments")


def plain(value: Any) -> Any:
    """Tuples -> lists, as after a JSON round trip (``extra`` goes through JSON on every path)."""
    return json.loads(json.dumps(value))


def assert_whole(got: dict[str, Any], ref: dict[str, Any]) -> None:
    """Every column of ``got`` (a resumed run's result) equals the uninterrupted ``ref``'s, exactly,
    but the measured ones; ``extra`` (curves, zero-shot dev accuracy, ...) too, but its provenance."""
    assert set(got) == set(ref)
    diffs = {k: (got[k], ref[k]) for k in ref if k not in (*MEASURED, "extra") and got[k] != ref[k]}
    assert not diffs, f"columns differ (resumed, uninterrupted): {diffs}"
    gx, rx = plain(got["extra"]), plain(ref["extra"])
    assert set(gx) == set(rx)
    diffs = {k: (gx[k], rx[k]) for k in rx if k not in PROVENANCE and gx[k] != rx[k]}
    assert not diffs, f"extra differs (resumed, uninterrupted): {diffs}"
    assert gx["resumed_from"] and gx["segments"] >= 2 and rx["segments"] == 1
