"""The offer catalog: the real purchase-card file passes, each bad row fails with its row number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recflow.config.settings import project_root
from recflow.data.offers import (
    CATALOG_COLUMNS,
    ENV_PATH,
    OfferCatalogError,
    is_eligible,
    read_catalog,
    run_catalog,
)
from recflow.validation.offers import load_catalog

GOOD = "A,A offer,A reward,0\r\nB,B offer,B reward,1000\r\nC,C offer,C reward,478\r\n"


def _write(tmp_path: Path, text: str, name: str = "offers.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_the_purchase_card_catalog_passes_with_350_rows_and_a_digest() -> None:
    """CI has ../shared: a missing catalog fails here (naming the env var to set), never skips."""
    catalog = load_catalog()
    assert len(catalog.frame) == 350 and catalog.frame["item_id"].is_unique
    assert catalog.frame["threshold"].between(0, 1000).all()
    assert len(catalog.digest) == 64 and catalog.digest == read_catalog().digest


def test_a_good_crlf_catalog_loads_and_its_digest_follows_the_bytes(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, GOOD))
    assert catalog.frame["threshold"].tolist() == [0, 1000, 478]
    assert catalog.frame["offer"].tolist() == ["A offer", "B offer", "C offer"]
    other = load_catalog(_write(tmp_path, GOOD.replace("478", "479"), "other.csv"))
    assert other.digest != catalog.digest


def test_a_batch_run_catalog_comes_from_its_param_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the batch DAG's planner passes as ``--offers``: the run's choice wins, a relative one is taken
    from the project root; none chosen and ``RECFLOW_OFFERS`` unset means no offers; a missing file fails."""
    chosen, configured = _write(tmp_path, GOOD, "chosen.csv"), _write(tmp_path, GOOD, "configured.csv")
    monkeypatch.delenv(ENV_PATH, raising=False)
    assert run_catalog(None) is None and run_catalog("") is None
    assert run_catalog(str(chosen)) == chosen
    monkeypatch.setenv(ENV_PATH, str(configured))
    assert run_catalog(None) == configured and run_catalog(str(chosen)) == chosen
    relative = Path("dags") / "batch_scoring.py"  # any file under the project root stands in for a catalog
    assert run_catalog(str(relative)) == project_root() / relative
    with pytest.raises(OfferCatalogError, match=r"nowhere\.csv \(from the run's offers Param\) does not exist"):
        run_catalog(str(tmp_path / "nowhere.csv"))
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "gone.csv"))
    with pytest.raises(OfferCatalogError, match=f"gone\\.csv \\(from {ENV_PATH}\\) does not exist"):
        run_catalog(None)


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        ("A,dup offer,dup reward,5", "row 4: duplicate_item (first at row 1)"),
        ("D,,D reward,5", "row 4: empty_offer"),
        ("D,D offer, ,5", "row 4: empty_reward"),
        ("D,D offer,D reward,12.5", "row 4: threshold_not_integer"),
        ("D,D offer,D reward,x", "row 4: threshold_not_integer"),
        ("D,D offer,D reward,1001", "row 4: threshold_out_of_range"),
        ("D,D offer,D reward,-1", "row 4: threshold_out_of_range"),
        (",D offer,D reward,5", "row 4: empty_item"),
    ],
)
def test_a_bad_row_fails_the_catalog_with_its_row_number(tmp_path: Path, bad_row: str, expected: str) -> None:
    path = _write(tmp_path, GOOD + bad_row + "\r\nE,E offer,E reward,7\r\n")
    with pytest.raises(OfferCatalogError, match="1 bad row") as failure:
        load_catalog(path)
    assert expected in str(failure.value)


def test_a_row_without_four_fields_fails_before_the_suite(tmp_path: Path) -> None:
    with pytest.raises(OfferCatalogError, match="row 2: 3 fields"):
        read_catalog(_write(tmp_path, "A,a,b,1\r\nB,b,2\r\n"))


def test_several_bad_rows_are_all_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "A,a,a,1\nA,a,a,2\nB,,b,3000\n")
    with pytest.raises(OfferCatalogError) as failure:
        load_catalog(path)
    assert "row 2: duplicate_item" in str(failure.value)
    assert "row 3: empty_offer, threshold_out_of_range" in str(failure.value)


def test_a_parquet_catalog_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "offers.parquet"
    pd.DataFrame([["A", "a", "r", "5"]], columns=list(CATALOG_COLUMNS)).to_parquet(path)
    assert load_catalog(path).frame["threshold"].tolist() == [5]
    with pytest.raises(OfferCatalogError, match="does not exist"):
        read_catalog(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("threshold", "eligible_from"),
    [(0, 0.0), (1, 0.001), (999, 0.999), (1000, 1.0)],
)
def test_the_eligibility_rule_at_its_edges(threshold: int, eligible_from: float) -> None:
    just_below = np.nextafter(eligible_from, -np.inf) if eligible_from > 0 else np.nan
    p = np.array([eligible_from, just_below, 1.0, np.nan])
    out = is_eligible(p, np.full(4, threshold, dtype=np.float64))
    # int(1000 * p) >= threshold, exactly as Python's int() truncates
    expected = [not np.isnan(v) and int(1000 * v) >= threshold for v in p]
    assert out.tolist() == expected
    assert out[2] and not out[3]
    if threshold == 0:
        assert out[0]
    if threshold in (1, 1000):
        assert out[0] and (np.isnan(just_below) or not out[1])


@pytest.mark.parametrize(
    ("propensity", "threshold", "eligible"),
    [
        (0.0, 0, True),
        (0.0009, 1, False),
        (0.001, 1, True),
        (0.9989, 999, False),
        (0.9995, 999, True),
        (0.99999, 1000, False),
        (1.0, 1000, True),
        (float("nan"), 0, False),
    ],
)
def test_the_eligibility_rule_on_literal_cases(propensity: float, threshold: int, eligible: bool) -> None:
    assert is_eligible(np.array([propensity]), np.array([threshold], dtype=np.float64)).tolist() == [eligible]
