"""MovieLens-100K ``u.data`` as interaction events.

Why a loader and not a copy: the MovieLens licence forbids redistribution, so the file is read in place
from ``RECFLOW_MOVIELENS_DIR`` (default ``<project_root>/../shared/data/movielens-100k``) and never copied
into the repository.

Mapping onto the contract:

* ``event_id``: ``ml100k-<user>-<item>-<unix ts>``, deterministic and unique (a user rates a movie once);
* ``user_id`` / ``item_id``: the numeric ids as strings (``"196"``), matching the other sources' string keys;
* ``event_ts``: the Unix timestamp as UTC;
* ``rating``: the 1..5 star rating as float;
* ``quantity``: 1 (one rating event);
* ``amount``: **NaN**, not 0.0. A rating is not a purchase, and 0.0 would claim a free purchase, breaking
  the contract's ``amount > 0`` rule and biasing any amount-weighted model. The raw suite therefore treats
  ``amount`` as nullable and requires each row to carry an amount or a rating.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from recflow.config.settings import project_root
from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER
from recflow.data.contract import conform

ENV_DIR: Final = "RECFLOW_MOVIELENS_DIR"
RATINGS_FILE: Final = "u.data"


def movielens_dir() -> Path:
    """The MovieLens-100K folder (env ``RECFLOW_MOVIELENS_DIR`` wins)."""
    raw = os.environ.get(ENV_DIR)
    return Path(raw) if raw else project_root().parent / "shared" / "data" / "movielens-100k"


def load_movielens(path: str | Path | None = None) -> pd.DataFrame:
    """Read ``u.data`` (tab-separated ``user item rating unix_ts``) into contract columns.

    ``path`` may be the folder or the file itself; default :func:`movielens_dir`. Raises
    ``FileNotFoundError`` naming the path and the env var when the file is missing.
    """
    p = Path(path) if path is not None else movielens_dir()
    if p.is_dir():
        p = p / RATINGS_FILE
    if not p.is_file():
        raise FileNotFoundError(
            f"MovieLens ratings file not found at {p}. Set {ENV_DIR} to the folder holding {RATINGS_FILE} "
            "(the data is not redistributable and is never copied into the repository)."
        )
    raw = pd.read_csv(
        p,
        sep="\t",
        header=None,
        names=["user", "item", "rating", "ts"],
        dtype={"user": np.int64, "item": np.int64, "rating": np.float64, "ts": np.int64},
    )
    users = raw["user"].astype(str)
    items = raw["item"].astype(str)
    df = pd.DataFrame(
        {
            COL_EVENT: "ml100k-" + users + "-" + items + "-" + raw["ts"].astype(str),
            COL_USER: users.astype(object),
            COL_ITEM: items.astype(object),
            COL_TS: pd.to_datetime(raw["ts"], unit="s", utc=True),
            COL_QUANTITY: 1,
            COL_AMOUNT: np.nan,
            COL_RATING: raw["rating"],
        }
    )
    df[COL_EVENT] = df[COL_EVENT].astype(object)
    return conform(df)


ITEMS_FILE: Final = "u.item"
GENRES_FILE: Final = "u.genre"


def load_genres(path: str | Path | None = None) -> dict[str, list[str]]:
    """``item_id -> sorted genre names`` from ``u.item`` (pipe-separated, Latin-1: id, title, dates, URL,
    then one 0/1 flag per genre of ``u.genre``): the item tags of the lake's ``items/`` for MovieLens."""
    folder = Path(path) if path is not None else movielens_dir()
    folder = folder.parent if folder.is_file() else folder
    genres = pd.read_csv(folder / GENRES_FILE, sep="|", header=None, names=["genre", "index"], encoding="latin-1")
    names = genres.dropna().sort_values("index")["genre"].tolist()
    items = pd.read_csv(folder / ITEMS_FILE, sep="|", header=None, encoding="latin-1", dtype={0: str})
    flags = items.iloc[:, -len(names) :].to_numpy(dtype=bool)
    return {
        str(item): sorted(np.asarray(names, dtype=object)[row].tolist())
        for item, row in zip(items[0], flags, strict=True)
    }
