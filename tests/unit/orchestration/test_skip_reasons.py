"""The questions that let a run skip in seconds: is the window empty, is ingestion still running?"""

from __future__ import annotations

from datetime import date

from recflow.orchestration.skip_reasons import (
    empty_window_reason,
    later_announcement_reason,
    missing_landing_reason,
    pending_ingestion_reason,
)

START, HOLDOUT, END = date(2026, 11, 1), date(2026, 11, 7), date(2026, 11, 9)


def test_a_window_with_data_in_both_halves_is_ready() -> None:
    days = {date(2026, 11, 3), date(2026, 11, 8)}
    assert empty_window_reason(START, HOLDOUT, END, days.__contains__) is None


def test_an_empty_window_names_both_halves() -> None:
    reason = empty_window_reason(START, HOLDOUT, END, lambda day: False)
    assert reason is not None
    assert "training days 2026-11-01..2026-11-06" in reason and "hold-out days 2026-11-07..2026-11-08" in reason


def test_a_missing_hold_out_alone_is_named() -> None:
    reason = empty_window_reason(START, HOLDOUT, END, lambda day: day < HOLDOUT)
    assert reason is not None and "hold-out days" in reason and "training days" not in reason


def test_the_window_is_half_open() -> None:
    # data only on END (exclusive) does not count for the hold-out
    assert empty_window_reason(START, HOLDOUT, END, {START, END}.__contains__) is not None


def test_pending_ingestion_holds_training_back_only_when_both_counts_are_positive() -> None:
    reason = pending_ingestion_reason(2, 3, dag_id="ingest_interactions")
    assert reason is not None and "3 validation(s) of ingest_interactions" in reason
    assert pending_ingestion_reason(0, 3, dag_id="ingest_interactions") is None  # stale task instance
    assert pending_ingestion_reason(1, 0, dag_id="ingest_interactions") is None  # last run still finishing


def test_missing_landing_reason_names_the_day_and_root() -> None:
    msg = missing_landing_reason(START, "/lake/landing", FileNotFoundError("no landing file"))
    assert "2026-11-01" in msg and "/lake/landing" in msg


def test_an_ingest_run_leaves_its_event_to_the_last_of_a_batch() -> None:
    reason = later_announcement_reason("2026-11-03", 2, dag_id="ingest_interactions")
    assert reason is not None and "2 other run(s) of ingest_interactions still to announce" in reason
    assert "2026-11-03 is validated" in reason
    assert later_announcement_reason("2026-11-03", 0, dag_id="ingest_interactions") is None  # the last one emits
