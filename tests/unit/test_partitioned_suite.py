"""The chunking that lets the batch_scores suite run on Spark workers: cut only between groups, refuse
unsorted input and suites whose chunked verdict could differ from the whole frame's."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from recflow.constants import COL_USER
from recflow.validation import SCORES_SUITE, load_suite_spec
from recflow.validation.partitioned import NotDecomposable, _merge, check_decomposable, group_chunks
from recflow.validation.suites import SuiteSpec


def _batches(users: list[str | None], size: int) -> list[pd.DataFrame]:
    frame = pd.DataFrame({COL_USER: users, "row": range(len(users))})
    return [frame.iloc[i : i + size].reset_index(drop=True) for i in range(0, len(frame), size)]


def test_chunks_are_cut_between_groups_and_keep_every_row() -> None:
    users = [None, "a", "a", "a", "b", "c", "c", "c", "c", "d", "e", "e"]
    chunks = list(group_chunks(iter(_batches(users, 2)), COL_USER, chunk_rows=3))
    assert [len(c) for c in chunks] != [len(users)], "small chunks were asked for"
    assert pd.concat(chunks)["row"].tolist() == list(range(len(users)))
    owners: dict[Any, int] = {}
    for n, chunk in enumerate(chunks):
        for user in set(chunk[COL_USER].fillna("<null>")):
            assert owners.setdefault(user, n) == n, f"group {user} split across chunks"


def test_unsorted_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="not sorted by user_id"):
        list(group_chunks(iter(_batches(["a", "b", "a", "c"], 1)), COL_USER, chunk_rows=1))


def test_only_group_decomposable_suites_run_chunked() -> None:
    check_decomposable(load_suite_spec(SCORES_SUITE), COL_USER)
    for bad in (
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["rank", "item_id"]}},
    ):
        with pytest.raises(NotDecomposable):
            check_decomposable(SuiteSpec(name="s", expectations=(bad,), path="-"), COL_USER)


def test_merge_adds_counts_and_fails_when_any_chunk_failed() -> None:
    def result(success: bool, unexpected: int, sample: list[str]) -> dict[str, Any]:
        return {"success": success, "element_count": 5, "unexpected_count": unexpected, "sample": sample,
                "observed_value": None, "error": None}  # fmt: skip

    merged = _merge([[result(True, 0, [])], [result(False, 2, ["x", "y"])], [result(False, 1, ["z"])]])
    assert merged == [{"success": False, "element_count": 15, "unexpected_count": 3, "sample": ["x", "y", "z"],
                       "observed_value": None, "error": None}]  # fmt: skip
