"""The rule that picks the champion of a data interval (``recflow.registry.serving``), on plain records.

Days are data intervals: a run promoting for day N records ``interval_end = day N 00:00``; batch scoring
asks for the interval ending at ``day N 04:00`` (its cron tick). Manual promotions have no interval and
take effect from their model's training-data end, never before the previous link's time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from recflow.registry import PromotionRecord, resolve_serving_version
from recflow.registry.serving import champion_for_interval, effective_times

D1 = datetime(2026, 11, 5, tzinfo=UTC)
D2, D3, D5 = D1 + timedelta(days=1), D1 + timedelta(days=2), D1 + timedelta(days=4)
TICK = timedelta(hours=4)  # the batch_scoring cron: day N is scored by the run ending day N 04:00
#: End of each version's training data (ModelVersion.created_at), asked only for manual links.
TRAINED = {"a": D1, "b": D2, "c": D5}


def link(version: str, interval_end: datetime | None, kind: str = "promote", *, n: int) -> PromotionRecord:
    """A chain link; ``promoted_at`` is a wall clock far from the data days, as in a late backfill."""
    return PromotionRecord(
        version=version, family="als", uri=f"s3://m/registry/versions/{version}/", digest=version * 64,
        promoted_at=datetime(2027, 3, 1, tzinfo=UTC) + timedelta(minutes=n), interval_end=interval_end,
        reason="test", actor="pytest" if interval_end is None else "airflow:recommender_training:run",
        kind=kind, previous=None, previous_digest=None, audit_key=f"audit/{n}", previous_audit_key=None,
        decision_id=str(n),
    )  # fmt: skip


def served(history: list[PromotionRecord], end: datetime) -> str | None:
    record = champion_for_interval(history, end, TRAINED.__getitem__)
    return None if record is None else record.version


def test_each_day_gets_the_champion_promoted_for_it_and_days_before_the_first_get_none() -> None:
    history = [link("a", D1, n=0), link("b", D2, n=1)]
    assert served(history, D1 - timedelta(days=1) + TICK) is None
    assert served(history, D1 - timedelta(microseconds=1)) is None
    assert served(history, D1) == "a"  # effective from the interval end itself
    assert served(history, D1 + TICK) == "a"
    assert served(history, D2 + TICK) == "b"
    assert served(history, D3 + TICK) == "b"
    assert served(history, datetime(2030, 1, 1, tzinfo=UTC)) == "b"


def test_a_manual_rollback_overrides_the_rolled_back_version_for_past_days_too() -> None:
    history = [link("a", D1, n=0), link("b", D2, n=1), link("a", None, "rollback", n=2)]
    assert [effective for effective, _ in effective_times(history, TRAINED.__getitem__)] == [D1, D2, D2]
    assert served(history, D1 + TICK) == "a"
    assert served(history, D2 + TICK) == "a", "b was rolled back: no backfill may score with it again"
    assert served(history, D3 + TICK) == "a"
    assert served(history, D1 - timedelta(days=1)) is None


def test_a_manual_promotion_never_scores_days_before_its_training_data_ended() -> None:
    history = [link("a", D1, n=0), link("b", D2, n=1), link("c", None, n=2)]
    assert served(history, D3 + TICK) == "b", "c was trained on data up to day 5"
    assert served(history, D5 + TICK) == "c"
    # the first promotion ever made by hand: from its model's data end on, nothing before it
    assert served([link("c", None, n=0)], D3 + TICK) is None
    assert served([link("c", None, n=0)], D5) == "c"


def test_a_late_promotion_for_an_older_interval_wins_only_from_the_newer_links_time() -> None:
    """Effective times never go backwards, so promoting later can not rewrite an earlier day's answer."""
    history = [link("a", D1, n=0), link("b", D3, n=1), link("c", D2, n=2)]
    assert served(history, D2 + TICK) == "a"
    assert served(history, D3 + TICK) == "c"


def test_the_answer_depends_on_the_chain_only_and_asks_for_manual_links_only() -> None:
    asked: list[str] = []

    def trained_until(version: str) -> datetime:
        asked.append(version)
        return TRAINED[version]

    history = [link("a", D1, n=0), link("b", D2, n=1), link("a", None, "rollback", n=2)]
    first = champion_for_interval(history, D2 + TICK, trained_until)
    assert first is not None and first.decision_id == "2" and asked == ["a"]
    assert champion_for_interval(history, D2 + TICK, trained_until) == first
    assert champion_for_interval([], D2, trained_until) is None


def test_bad_questions_are_refused() -> None:
    with pytest.raises(ValueError, match="time-zone-aware"):
        champion_for_interval([link("a", D1, n=0)], datetime(2026, 11, 5), TRAINED.__getitem__)
    with pytest.raises(ValueError, match="at most one of pinned, at and interval_end"):
        resolve_serving_version(None, pinned="a", interval_end=D1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most one of pinned, at and interval_end"):
        resolve_serving_version(None, at=D1, interval_end=D1)  # type: ignore[arg-type]
