"""Deterministic synthetic purchase-card interactions: cardholders (users) x merchant categories (items).

Why synthetic data: the real purchase-card file is not redistributable here, and the pipeline needs data
of any size on any day, reproducible bit for bit, with structure a recommender can actually learn.

The generative model (all parameters fixed by ``seed``; nothing depends on wall-clock time):

* **Users** ``u000000 ..``: activity is log-normal, so a few cardholders buy a lot.
* **Items**: the 350 merchant-category names of ``offerList.csv`` (env ``RECFLOW_PCARD_OFFERS``, default
  ``<project_root>/../shared/data/pcard/offerList.csv``), else ``mcc_000 ..``. Popularity is Zipf
  (exponent :data:`ZIPF_EXPONENT`) over a seeded random order of the items.
* **Latent tastes**: each user and item has a :data:`RANK`-dimensional factor; a user picks item ``i``
  with probability ``softmax(TASTE_STRENGTH * <u, v_i> + log popularity_i)``. A low-rank model therefore
  beats popularity, which is what makes the data *learnable*.
* **Drift**: user factors rotate slowly, ``u(t) = cos(wt) u0 + sin(wt) u1`` with period
  :data:`DRIFT_PERIOD_DAYS`, so tastes change across days but any day is computable on its own.
* **Weekly seasonality**: the day's volume is ``events_per_day * WEEKDAY_FACTORS[weekday]`` (mean 1.0);
  the time of day follows office hours (UTC).
* **Amount**: ``quantity * LogNormal(log scale_item, AMOUNT_SIGMA)`` rounded to cents, with a log-normal
  per-category scale; **quantity** is ``1 + Poisson(lambda_item)``. ``rating`` is always null (purchases
  carry no explicit rating).

Each day is generated from its own random stream (``seed``, day ordinal, block number), in blocks of
:data:`BLOCK_ROWS` rows, so days can be generated in parallel or backfilled in any order, and the output
does not depend on the chunk size used for writing. Memory is bounded by one block plus the writer's chunk.
"""

from __future__ import annotations

import gzip as gzip_module
import io
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Final, TypedDict, Unpack

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recflow.config.settings import project_root
from recflow.constants import (
    COL_AMOUNT,
    COL_EVENT,
    COL_ITEM,
    COL_QUANTITY,
    COL_RATING,
    COL_TS,
    COL_USER,
    DEFAULT_SEED,
)
from recflow.data.contract import (
    INTERACTION_COLUMNS,
    LANDING_STEM,
    empty_interactions,
    landing_extension,
    partition_dir_name,
)

RANK: Final = 8
TASTE_STRENGTH: Final = 2.0
ZIPF_EXPONENT: Final = 1.0
DRIFT_PERIOD_DAYS: Final = 365.0
DRIFT_EPOCH: Final = date(2024, 1, 1)
AMOUNT_SIGMA: Final = 0.6
#: Monday .. Sunday; mean 1.0 so ``events_per_day`` is the weekly average. Mild on purpose: the
#: volume check compares a day with the trailing 7-day mean and must not flag ordinary weekends.
WEEKDAY_FACTORS: Final[tuple[float, ...]] = (1.08, 1.08, 1.05, 1.04, 1.00, 0.88, 0.87)
#: Share of a day's events per UTC hour: quiet nights, office-hours peak.
HOUR_PROFILE: Final[tuple[float, ...]] = (
    1,
    1,
    1,
    1,
    1,
    2,
    3,
    6,
    9,
    10,
    10,
    9,
    8,
    9,
    10,
    10,
    9,
    7,
    5,
    4,
    3,
    2,
    1,
    1,
)
BLOCK_ROWS: Final = 65_536
#: Rows per item-sampling sub-batch x items bounds the probability matrix (here ~32 MB of float64).
_MAX_CELLS: Final = 4_000_000

DEFAULT_USERS: Final = 2_000
DEFAULT_ITEMS: Final = 350
DEFAULT_EVENTS_PER_DAY: Final = 10_000

#: Faults that can be injected, as ``name -> share of rows``; used by validation tests.
FAULT_KINDS: Final[tuple[str, ...]] = (
    "null_user",
    "null_item",
    "negative_amount",
    "absurd_amount",
    "zero_quantity",
    "duplicate_event_id",
    "future_ts",
    "past_ts",
)
ABSURD_AMOUNT: Final = 1e12

ENV_OFFERS: Final = "RECFLOW_PCARD_OFFERS"


def offers_path() -> Path:
    """Where the merchant-category list lives (env ``RECFLOW_PCARD_OFFERS`` wins)."""
    raw = os.environ.get(ENV_OFFERS)
    return Path(raw) if raw else project_root().parent / "shared" / "data" / "pcard" / "offerList.csv"


@lru_cache(maxsize=8)
def _merchant_categories(path: str) -> tuple[str, ...]:
    """Column 0 of ``offerList.csv`` (no header, CRLF), de-duplicated and sorted for a stable order."""
    p = Path(path)
    if not p.is_file():
        return ()
    names = pd.read_csv(p, header=None, usecols=[0], dtype=str, encoding="utf-8")[0].dropna().str.strip()
    return tuple(sorted({n for n in names if n}))


def item_names(n_items: int) -> list[str]:
    """The first ``n_items`` merchant categories, padded with ``mcc_NNN`` ids when the list is short."""
    names = list(_merchant_categories(str(offers_path())))[:n_items]
    names += [f"mcc_{i:03d}" for i in range(len(names), n_items)]
    return names


def user_names(n_users: int) -> list[str]:
    """``u000000`` style cardholder ids."""
    return [f"u{i:06d}" for i in range(n_users)]


@dataclass(frozen=True)
class World:
    """Everything about the population that does not change from day to day (fixed by the seed)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_cdf: np.ndarray
    user_f0: np.ndarray
    user_f1: np.ndarray
    item_f: np.ndarray
    item_logpop: np.ndarray
    item_log_scale: np.ndarray
    item_qty_lambda: np.ndarray

    def user_factors(self, day: date) -> np.ndarray:
        """User tastes on ``day``: a slow rotation between two fixed factor sets (the drift)."""
        angle = 2 * math.pi * (day - DRIFT_EPOCH).days / DRIFT_PERIOD_DAYS
        return math.cos(angle) * self.user_f0 + math.sin(angle) * self.user_f1

    def item_probabilities(self, users: np.ndarray, day: date) -> np.ndarray:
        """Row-stochastic matrix P[u, i] of item choice for the given user indices on ``day``."""
        logits = TASTE_STRENGTH * (self.user_factors(day)[users] @ self.item_f.T) + self.item_logpop
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return p


@lru_cache(maxsize=8)
def make_world(n_users: int, n_items: int, seed: int, items_key: str = "") -> World:
    """Build (and cache) the population for ``seed``. ``items_key`` only keys the cache on the item list."""
    if n_users < 1 or n_items < 1:
        raise ValueError(f"need at least one user and one item, got n_users={n_users}, n_items={n_items}")
    rng = np.random.default_rng([seed, 0x5EED])
    activity = rng.lognormal(0.0, 1.0, n_users)
    user_cdf = np.cumsum(activity / activity.sum())
    # Entries ~ N(0, k^-1/2) make <u, v> ~ N(0, 1) whatever the rank.
    scale = RANK**-0.25
    user_f0 = rng.normal(0.0, scale, (n_users, RANK))
    user_f1 = rng.normal(0.0, scale, (n_users, RANK))
    item_f = rng.normal(0.0, scale, (n_items, RANK))
    ranks = rng.permutation(n_items)
    item_logpop = -ZIPF_EXPONENT * np.log1p(ranks).astype(np.float64)
    item_log_scale = rng.normal(math.log(60.0), 1.0, n_items)
    item_qty_lambda = rng.gamma(1.0, 0.4, n_items)
    return World(
        user_ids=np.array(user_names(n_users), dtype=object),
        item_ids=np.array(item_names(n_items), dtype=object),
        user_cdf=user_cdf,
        user_f0=user_f0,
        user_f1=user_f1,
        item_f=item_f,
        item_logpop=item_logpop,
        item_log_scale=item_log_scale,
        item_qty_lambda=item_qty_lambda,
    )


def _world(n_users: int, n_items: int, seed: int) -> World:
    return make_world(n_users, n_items, seed, str(offers_path()))


def events_on(day: date, events_per_day: int) -> int:
    """How many events ``day`` has: the weekly average scaled by its weekday factor."""
    return round(events_per_day * WEEKDAY_FACTORS[day.weekday()])


def _check_faults(faults: Mapping[str, float] | None) -> dict[str, float]:
    faults = dict(faults or {})
    unknown = sorted(set(faults) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; expected some of {FAULT_KINDS}")
    for kind, share in faults.items():
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"fault share for {kind!r} must be in [0, 1], got {share}")
    return faults


def _block(world: World, day: date, block: int, start: int, n: int, seed: int) -> pd.DataFrame:
    """Rows ``start .. start+n`` of ``day``, from the block's own random stream."""
    rng = np.random.default_rng([seed, day.toordinal(), block])
    users = np.searchsorted(world.user_cdf, rng.random(n) * world.user_cdf[-1], side="right")
    users = np.minimum(users, len(world.user_ids) - 1)
    n_items = len(world.item_ids)
    items = np.empty(n, dtype=np.int64)
    step = max(1, _MAX_CELLS // n_items)
    for lo in range(0, n, step):
        cdf = np.cumsum(world.item_probabilities(users[lo : lo + step], day), axis=1)
        r = rng.random(len(cdf))[:, None] * cdf[:, -1:]
        items[lo : lo + step] = np.minimum((cdf < r).sum(axis=1), n_items - 1)

    hour_p = np.asarray(HOUR_PROFILE, dtype=np.float64)
    hours = rng.choice(24, size=n, p=hour_p / hour_p.sum())
    millis = hours * 3_600_000 + rng.integers(0, 3_600_000, n)
    day_start = pd.Timestamp(day, tz="UTC").value
    ts = pd.to_datetime(day_start + millis * 1_000_000, utc=True)

    quantity = 1 + rng.poisson(world.item_qty_lambda[items])
    unit = np.exp(world.item_log_scale[items] + AMOUNT_SIGMA * rng.standard_normal(n))
    amount = np.maximum(np.round(quantity * unit, 2), 0.01)
    tag = day.strftime("%Y%m%d")
    return pd.DataFrame(
        {
            COL_EVENT: [f"ev-{tag}-{i:010d}" for i in range(start, start + n)],
            COL_USER: world.user_ids[users],
            COL_ITEM: world.item_ids[items],
            COL_TS: ts,
            COL_QUANTITY: quantity.astype(np.int64),
            COL_AMOUNT: amount,
            COL_RATING: np.full(n, np.nan),
        },
        columns=list(INTERACTION_COLUMNS),
    )


def _inject(df: pd.DataFrame, faults: Mapping[str, float], day: date, block: int, seed: int) -> pd.DataFrame:
    """Corrupt a seeded share of rows per fault kind (test data for the validator)."""
    rng = np.random.default_rng([seed, day.toordinal(), block, 0xFA17])
    n = len(df)
    for kind in FAULT_KINDS:  # fixed order keeps the result independent of dict order
        share = faults.get(kind, 0.0)
        if share <= 0 or n == 0:
            continue
        mask = rng.random(n) < share
        if kind == "null_user":
            df.loc[mask, COL_USER] = None
        elif kind == "null_item":
            df.loc[mask, COL_ITEM] = None
        elif kind == "negative_amount":
            df.loc[mask, COL_AMOUNT] = -df.loc[mask, COL_AMOUNT]
        elif kind == "absurd_amount":
            df.loc[mask, COL_AMOUNT] = ABSURD_AMOUNT
        elif kind == "zero_quantity":
            df.loc[mask, COL_QUANTITY] = 0
        elif kind == "duplicate_event_id":
            mask[0] = False
            idx = np.flatnonzero(mask)
            df.loc[idx, COL_EVENT] = df[COL_EVENT].to_numpy()[idx - 1]
        elif kind == "future_ts":
            df.loc[mask, COL_TS] = df.loc[mask, COL_TS] + pd.Timedelta(days=2)
        elif kind == "past_ts":
            df.loc[mask, COL_TS] = df.loc[mask, COL_TS] - pd.Timedelta(days=3)
    return df


class DayOptions(TypedDict, total=False):
    """What shapes a generated day, as keyword arguments; :func:`iter_day` holds the defaults.

    Why one declaration: :func:`generate_day`, :func:`write_day` and :func:`write_days` pass these through
    unchanged, so their names, types and defaults are written once.
    """

    n_users: int
    n_items: int
    events_per_day: int
    seed: int
    faults: Mapping[str, float] | None


def iter_day(
    day: date,
    *,
    n_users: int = DEFAULT_USERS,
    n_items: int = DEFAULT_ITEMS,
    events_per_day: int = DEFAULT_EVENTS_PER_DAY,
    seed: int = DEFAULT_SEED,
    faults: Mapping[str, float] | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield ``day``'s events in blocks of at most :data:`BLOCK_ROWS` rows (bounded memory)."""
    checked = _check_faults(faults)
    world = _world(n_users, n_items, seed)
    total = events_on(day, events_per_day)
    for block, start in enumerate(range(0, total, BLOCK_ROWS)):
        df = _block(world, day, block, start, min(BLOCK_ROWS, total - start), seed)
        yield _inject(df, checked, day, block, seed) if checked else df


def generate_day(day: date, **options: Unpack[DayOptions]) -> pd.DataFrame:
    """All of ``day``'s events as one frame; same inputs give identical output.

    Columns and dtypes are those of :data:`recflow.data.contract.INTERACTION_DTYPES`. Days are
    independent given ``seed`` and ``day``. For large days use :func:`iter_day` or :func:`write_days`.
    """
    blocks = list(iter_day(day, **options))
    if not blocks:
        return empty_interactions()
    return pd.concat(blocks, ignore_index=True)


# --------------------------------------------------------------------------------------------- writing

_ARROW_SCHEMA: Final = pa.schema(
    [
        pa.field(COL_EVENT, pa.string()),
        pa.field(COL_USER, pa.string()),
        pa.field(COL_ITEM, pa.string()),
        pa.field(COL_TS, pa.timestamp("ms", tz="UTC")),
        pa.field(COL_QUANTITY, pa.int64()),
        pa.field(COL_AMOUNT, pa.float64()),
        pa.field(COL_RATING, pa.float64()),
    ]
)


def _text_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as ISO-8601 ``...Z`` strings, the wire form of text landing files."""
    out = df.copy()
    ts = out[COL_TS]
    text = np.datetime_as_string(ts.dt.tz_convert(None).to_numpy(), unit="ms").astype(object) + "Z"
    text[ts.isna().to_numpy()] = None
    out[COL_TS] = text
    return out


class _LandingWriter:
    """Append chunks to one landing file of any format; the caller renames the temp file when done."""

    def __init__(self, path: Path, fmt: str, gzip: bool) -> None:
        self.fmt = fmt
        self._parquet: pq.ParquetWriter | None = None
        self._csv: pacsv.CSVWriter | None = None
        self._raw: io.BufferedIOBase | None = None
        if fmt == "parquet":
            self._parquet = pq.ParquetWriter(path, _ARROW_SCHEMA, compression="gzip" if gzip else "snappy")
        else:
            self._raw = gzip_module.open(path, "wb", compresslevel=5) if gzip else open(path, "wb")  # noqa: SIM115

    def write(self, df: pd.DataFrame) -> None:
        if self._parquet is not None:
            self._parquet.write_table(pa.Table.from_pandas(df, schema=_ARROW_SCHEMA, preserve_index=False))
            return
        assert self._raw is not None
        text = _text_frame(df)
        if self.fmt == "csv":
            table = pa.Table.from_pandas(text, preserve_index=False)
            if self._csv is None:
                self._csv = pacsv.CSVWriter(self._raw, table.schema)
            self._csv.write_table(table)
        else:
            self._raw.write(text.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8"))

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._csv is not None:
            self._csv.close()
        if self._raw is not None:
            self._raw.close()


def landing_file(landing_root: str | Path, day: date, fmt: str = "csv", gzip: bool = False) -> Path:
    """``<landing>/date=YYYY-MM-DD/interactions.<ext>``."""
    return Path(landing_root) / partition_dir_name(day) / f"{LANDING_STEM}.{landing_extension(fmt, gzip)}"


def write_day(
    day: date,
    out_dir: str | Path,
    *,
    fmt: str = "csv",
    gzip: bool = False,
    chunk_rows: int = 1_000_000,
    **options: Unpack[DayOptions],
) -> Path:
    """Write one day's landing file atomically (temp file + rename) and return its path.

    Blocks are buffered up to ``chunk_rows`` rows before each write, so memory stays bounded by
    ``chunk_rows`` whatever the day's size. Re-running replaces the file with identical content.
    """
    path = landing_file(out_dir, day, fmt, gzip)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    writer = _LandingWriter(tmp, fmt, gzip)
    try:
        buffer: list[pd.DataFrame] = []
        rows = 0
        for df in iter_day(day, **options):
            buffer.append(df)
            rows += len(df)
            if rows >= chunk_rows:
                writer.write(pd.concat(buffer, ignore_index=True))
                buffer, rows = [], 0
        if buffer:
            writer.write(pd.concat(buffer, ignore_index=True))
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_days(
    start: date,
    end: date,
    out_dir: str | Path,
    fmt: str = "csv",
    gzip: bool = False,
    chunk_rows: int = 1_000_000,
    **options: Unpack[DayOptions],
) -> list[Path]:
    """Write one landing file per day for ``start .. end`` **inclusive** (like ``--from-date/--to-date``).

    Returns the written paths in date order. Each day is independent, so callers may also fan out
    :func:`write_day` over days in parallel.
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    paths = []
    day = start
    while day <= end:
        paths.append(write_day(day, out_dir, fmt=fmt, gzip=gzip, chunk_rows=chunk_rows, **options))
        day += timedelta(days=1)
    return paths
