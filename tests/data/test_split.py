"""The seeded draw behind every random train/test split."""

from __future__ import annotations

import pytest

from pdd.data.split import seeded_subset
from pdd.errors import DataError


def test_draw_is_exact_reproducible_and_keeps_groups_together():
    items = [f"f{i:02d}" for i in range(20)]
    group_of = {name: ("twin" if name in ("f03", "f11", "f17") else name) for name in items}.get
    for seed in range(10):
        chosen, rest = seeded_subset(items, 12, seed, group_of=group_of)
        assert len(chosen) == 12 and sorted(chosen + rest) == items
        assert chosen == sorted(chosen)  # canonical order is kept
        twins_chosen = {"f03", "f11", "f17"} & set(chosen)
        assert twins_chosen in (set(), {"f03", "f11", "f17"})
        assert (chosen, rest) == seeded_subset(items, 12, seed, group_of=group_of)
    assert len({tuple(seeded_subset(items, 12, seed)[0]) for seed in range(10)}) > 5


def test_impossible_draws_are_refused():
    with pytest.raises(DataError, match="cannot choose 5 of 3"):
        seeded_subset(["a", "b", "c"], 5, 0)
    with pytest.raises(DataError, match="duplicates must stay together"):
        seeded_subset(["a", "b", "c"], 2, 0, group_of=lambda item: "same")
