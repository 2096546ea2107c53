"""Golden back-test: three random scenarios' full output frames against stored CSVs.

The frames (summary, fates, memory, events, messages) must equal, character for character,
those stored in tests/golden/<scenario>/ when the behaviour was pinned. A restructuring
must leave them unchanged; a change of behaviour regenerates them on purpose with
``python tests/golden/scenarios.py`` (the reason goes in the commit message).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import scenarios as golden  # noqa: E402


@pytest.mark.parametrize("name", sorted(golden.GOLDEN))
def test_output_frames_equal_the_golden_ones(name):
    got = golden.frames(name)
    for frame in golden.FRAMES:
        want = (golden.HERE / name / f"{frame}.csv").read_text()
        if got[frame] != want:
            g, w = got[frame].splitlines(), want.splitlines()
            first = next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
            pytest.fail(f"{name}/{frame}.csv differs from the golden frame at line {first + 1} "
                        f"({len(g)} lines now, {len(w)} stored):\n  now:    {g[first] if first < len(g) else '<end>'}\n"
                        f"  stored: {w[first] if first < len(w) else '<end>'}")


def test_golden_scenarios_cover_what_they_claim():
    """Each scenario exercises the behaviour it is there to pin."""
    import pandas as pd

    def frame(name, f):
        return pd.read_csv(golden.HERE / name / f"{f}.csv")

    ev = frame("backoff_departures", "events")
    assert (ev["event"] == "departed").sum() >= 2 and (ev["event"] == "joined").sum() >= 2
    m = frame("backoff_departures", "messages")
    horizon = 150
    assert ((m["qos"] == 0) & (m["fate"].isin(["pending", "departed_held"])) & (m["fate_at"] == horizon)).any()
    m = frame("lazy_expiry", "messages")
    assert (m["fate"] == "message_expired").sum() >= 5
    m = frame("drop_oldest_expiry", "messages")
    assert {"queue_full", "message_expired"} <= set(m["fate"])
    assert (frame("drop_oldest_expiry", "events")["event"] == "departed").any()
    for name in golden.GOLDEN:
        assert len(frame(name, "messages")) > 200, name
