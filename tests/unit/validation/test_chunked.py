"""What lets the batch_scores suite run chunk by chunk of users: only rules whose verdict over
user-complete chunks equals the whole frame's are accepted, and chunk results add up."""

from __future__ import annotations

from typing import Any

import pytest

from recflow.constants import COL_USER
from recflow.validation import SCORES_SUITE, load_suite_spec
from recflow.validation.chunked import NotDecomposable, check_decomposable, merge_results
from recflow.validation.suites import SuiteSpec


def test_only_group_decomposable_suites_run_chunked() -> None:
    check_decomposable(load_suite_spec(SCORES_SUITE), COL_USER)
    unique_user = {"type": "expect_column_values_to_be_unique", "kwargs": {"column": COL_USER}}
    check_decomposable(SuiteSpec(name="s", expectations=(unique_user,), path="-"), COL_USER)
    for bad in (
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["rank", "item_id"]}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "item_id"}},
    ):
        with pytest.raises(NotDecomposable):
            check_decomposable(SuiteSpec(name="s", expectations=(bad,), path="-"), COL_USER)


def test_merge_adds_counts_and_fails_when_any_chunk_failed() -> None:
    def result(success: bool, unexpected: int, sample: list[int], ids: list[str]) -> dict[str, Any]:
        return {"success": success, "element_count": 5, "unexpected_count": unexpected, "sample": sample,
                "sample_ids": ids, "observed_value": None, "error": None}  # fmt: skip

    merged = merge_results(
        [[result(True, 0, [], [])], [result(False, 2, [1, 2], ["a", "b"])], [result(False, 1, [3], ["c"])]]
    )
    assert merged == [{"success": False, "element_count": 15, "unexpected_count": 3, "sample": [1, 2, 3],
                       "sample_ids": ["a", "b", "c"], "observed_value": None, "error": None}]  # fmt: skip
