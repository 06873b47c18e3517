"""The compare step on the real S3 registry refuses a candidate that is better on average but whose
slice drops beyond its tolerance against the champion (``slice_thresholds``, ``models/slices.yaml``).

The data is built so the outcome is known by hand: 10 head items every user trains on, 30 tail items two
users each. In the hold-out every user takes two unseen head items and users u0..u29 one unseen tail item.
The champion (a hand-made ALS) ranks exactly that tail item first and head items last; the
candidate (popularity) ranks the head items first. So the candidate wins on average (two head hits per
user) and loses the whole tail slice (recall 0 against the champion's 1).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recflow.data.window import TrainingWindow
from recflow.evaluation.python_holdout import record_canary
from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.index import IdIndex, SeenItems
from recflow.models.popularity import PopularityRecommender
from recflow.promotion.compare import score_and_decide
from recflow.promotion.gate import promote_blessed
from recflow.promotion.policy import PromotionPolicy
from recflow.promotion.report import render_report
from recflow.registry import ModelRegistry
from recflow.registry.blessing import bless
from recflow.scoring.calibration import Calibration

pytestmark = pytest.mark.integration
N_USERS, N_HEAD, N_TAIL = 60, 10, 30
HEAD = [f"h{n}" for n in range(N_HEAD)]
TAIL = [f"t{n:02d}" for n in range(N_TAIL)]
TRAIN = [(f"u{u}", HEAD[(u + j) % N_HEAD]) for u in range(N_USERS) for j in range(3)] + [
    (f"u{u}", TAIL[u % N_TAIL]) for u in range(N_USERS)
]
HELD_OUT = [(f"u{u}", HEAD[(u + j) % N_HEAD]) for u in range(N_USERS) for j in (3, 4)] + [
    (f"u{u}", TAIL[(u + 1) % N_TAIL]) for u in range(N_TAIL)
]
WINDOW = TrainingWindow(date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22))
POLICY = {
    "schema_version": 2,
    "primary_metric": "ndcg@10",
    "baseline": None,
    "default": {"change_thresholds": {"ndcg@10": {"direction": "higher_is_better", "absolute": 0.01}}},
    "slice_thresholds": {"recall@10": {"max_drop": 0.05, "min_size": 10}},
}


def _lake(root: Path) -> Path:
    for day, pairs in {"2026-11-20": TRAIN, "2026-11-21": HELD_OUT}.items():
        part = root / "interactions" / f"event_date={day}"
        part.mkdir(parents=True)
        pd.DataFrame(pairs, columns=["user_id", "item_id"]).to_parquet(part / "part-0.parquet")
    return root


def _tail_lover(folder: Path) -> Path:
    """ALS factors that score each user's held-out tail item 1, the other tail items 0 and head items -1
    (the last factor), so no head item reaches its top 10."""
    train = pd.DataFrame(TRAIN, columns=["user_id", "item_id"])
    index = IdIndex.from_frame(train)
    users = np.zeros((index.n_users, N_TAIL + 1), dtype=np.float32)
    items = np.zeros((index.n_items, N_TAIL + 1), dtype=np.float32)
    users[:, N_TAIL] = 1.0
    items[index.item_codes(HEAD), N_TAIL] = -1.0
    for u in range(N_USERS):
        users[index.user_codes([f"u{u}"])[0], (u + 1) % N_TAIL] = 1.0
    for t, name in enumerate(TAIL):
        items[index.item_codes([name])[0], t] = 1.0
    model = AlsRecommender(index, SeenItems.from_frame(train, index), users, items, AlsParams(rank=N_TAIL + 1))
    model.save(folder)
    Calibration("platt", a=4.0, b=-2.0).save(folder)
    (folder / "canary.json").write_text(__import__("json").dumps(record_canary(model)))
    return folder


def _register(registry: ModelRegistry, folder: Path, family: str, day: int) -> Any:
    return registry.register(
        folder, family=family, metrics={"ndcg@10": 0.1}, lineage={"run_id": folder.name},
        created_at=datetime(2026, 11, day, tzinfo=UTC),
    )  # fmt: skip


def test_a_candidate_better_on_average_is_refused_for_its_tail_slice(registry: ModelRegistry, tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    champion = _register(registry, _tail_lover(tmp_path / "champ"), "als", 21)
    bless(registry, champion, kind="model", passed=True, reasons=["test"], details={})
    promote_blessed(registry, champion.version, expected_champion=None, reason="seed", actor="it")
    pop = PopularityRecommender.fit(pd.DataFrame(TRAIN, columns=["user_id", "item_id"]))
    pop.save(tmp_path / "cand")
    candidate = _register(registry, tmp_path / "cand", "popularity", 22)
    judgement = score_and_decide(
        registry, {"pop": candidate}, lake_root=lake, window=WINDOW, policy=PromotionPolicy.from_dict(POLICY),
        cutoffs=[10], work_dir=tmp_path / "work",
    )  # fmt: skip
    mine, theirs = judgement.metrics["pop"], judgement.metrics["champion"]
    assert mine["ndcg@10"] > theirs["ndcg@10"] + 0.01  # better on average, by more than the change rule asks
    assert mine["recall@10[item_popularity=tail]"] == 0.0 and theirs["recall@10[item_popularity=tail]"] == 1.0
    assert mine["size[item_popularity=tail]"] >= 10
    assert judgement.decision.winner is None
    failures = judgement.decision.verdict("pop").failures
    assert failures and all("slice item_popularity=" in f and "max_drop" in f for f in failures), failures
    assert any("item_popularity=tail" in f for f in failures)
    # the run's report: the worst slice first, and the champion's calibration with its reliability diagram
    html = render_report(judgement, run_id="it", interval_end=datetime(2026, 11, 22, tzinfo=UTC))
    worst = html.split("Worst slices against the champion", 1)[1]
    assert worst.index("recall@10[item_popularity=tail]") < worst.index("</table>")
    assert set(judgement.calibration) == {"champion"}  # the popularity candidate carries no map
    figures = judgement.calibration["champion"]
    assert figures["after"]["pairs"] == figures["before"]["pairs"] > 0
    assert "reliability diagram of champion" in html and "No model of this run" not in html
    # the per-category table: every hold-out item with its positives; no catalog here, so no offer counts
    tail_row = next(r for r in judgement.categories["champion"] if r["item_id"] == TAIL[1])
    assert tail_row["pos_count"] == 1 and tail_row["recall_at_k"] == 1.0 and tail_row["tp"] is None
    assert "By category" in html and f"<th>{TAIL[1]}</th>" in html
