"""Approximate nearest-neighbour candidates for large catalogs: a faiss index of the item factors.

Why: a factor model scores a user by one dot product per item, so exact top-K costs the whole catalog
per user (10^6 items x rank 64 is 64 MFLOP and a 4 MB score row per user). Above
:data:`ANN_MIN_ITEMS` items, the scoring core (:func:`recflow.scoring.core.score_batch`) asks this index
for a few hundred candidates per user by inner product, then re-scores them exactly with the model and
removes the user's seen items, as it does for any candidate list; below it, exact scoring over the whole
catalog stays the default (it is cheaper there, and exact). Batch, Kafka and HTTP scoring all go
through that one core, so they use the index the same way.

Why faiss, and which structure: ``bench/ann.py`` compared faiss, hnswlib and usearch (HNSW each, 10^4
items: recall@10 0.997 / 0.994 / 0.989, ``bench/results/ann.md``); faiss is already a runtime dependency
and gives HNSW, IVF and product quantization behind one file format. ``bench/results/ann_index.md``
measured them inside the core on a quiet machine (i.i.d. factors, rank 64, one thread, one-user requests):
at 10^6 items HNSW32 built in 181 s and, at efSearch 1,024, recalled 0.945 of the exact top-10 in 9.2 ms;
IVF1024 recalled 0.51; a scan of every item's 4-bit PQ codes built in 1.9 s and recalled 0.978 with 800
candidates re-scored, in 2.2 ms. So the default is that scan (``PQx4fs``), with the pool training tunes
(:meth:`CandidateIndex.tune`); HNSW and IVF stay available through :class:`AnnParams` for catalogs whose
factors cluster.

Why plain files: the index is written by ``faiss.write_index`` (``ann.faiss``) beside ``ann.json`` (the
parameters, the catalog shape, the sha256 of ``ann.faiss`` and of the item factors it was built from).
Both files sit in the artifact folder, so the registry's manifest digest covers them like every other
file, and nothing is unpickled. :meth:`CandidateIndex.load` refuses an index whose bytes or factors
differ from what ``ann.json`` names: an index built from other factors would return the wrong items
silently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

ANN_INDEX_FILE: Final = "ann.faiss"
ANN_META_FILE: Final = "ann.json"
ANN_SCHEMA_VERSION: Final = 1

#: Catalog size from which the core retrieves candidates from the index instead of scoring every item
#: (and from which training builds one). ``bench/results/ann_index.md`` (quiet machine, rank 64, one
#: thread, a one-user request): at 3x10^4 items the PQ scan took 0.24-0.56 ms against 0.42 ms exact, at
#: 10^5 0.31-0.50 ms against 1.36 ms (recall@10 0.96-0.998), at 10^6 1.9-2.4 ms against 19.3 ms. Below
#: 10^5 the index saves too little to be worth an approximation, so exact scoring stays the default.
ANN_MIN_ITEMS: Final = 100_000


class AnnError(ValueError):
    """An index file that does not match its ``ann.json`` or the model's item factors, or bad parameters."""


@dataclass(frozen=True)
class AnnParams:
    """How the index is built and searched.

    ``factory`` is a faiss ``index_factory`` string (``HNSW32``: a graph of 32 links per node; ``IVF1024,
    Flat``: 1,024 k-means cells scanned exactly; ``PQ32x4fs``: every item's factors compressed to 32 4-bit
    codes and all of them scanned with SIMD lookups), or ``PQx4fs``: that, with one code per two factor
    dimensions, whatever the rank. ``build_depth`` is HNSW's ``efConstruction``; ``search_depth`` is
    HNSW's ``efSearch`` or IVF's ``nprobe`` (a PQ scan has no depth); ``pool`` is how many candidates per
    user the core re-scores exactly (plus the user's seen items, which it removes).
    """

    factory: str = "PQx4fs"
    build_depth: int = 40
    search_depth: int = 256
    pool: int = 200
    #: Training searches deeper until the index's candidates hold this share of sampled users' exact
    #: top-10 (:meth:`CandidateIndex.tune`); None keeps ``search_depth`` as given.
    target_recall: float | None = 0.95

    def __post_init__(self) -> None:
        if not self.factory.startswith(("HNSW", "IVF", "PQ")):
            raise AnnError(f"ann factory must be an HNSW, IVF or PQ faiss factory string, got {self.factory!r}")
        if min(self.build_depth, self.search_depth, self.pool) < 1:
            raise AnnError(f"ann depths and pool must be >= 1: {self}")
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            raise AnnError(f"ann target_recall must be in (0, 1], got {self.target_recall}")

    @property
    def is_ivf(self) -> bool:
        return self.factory.startswith("IVF")

    @property
    def is_pq(self) -> bool:
        return self.factory.startswith("PQ")

    def faiss_factory(self, dim: int) -> str:
        """The faiss factory string for item vectors of ``dim`` dimensions (``PQx4fs`` resolved)."""
        if self.factory != "PQx4fs":
            return self.factory
        return f"PQ{dim // 2 if dim % 2 == 0 else dim}x4fs"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def vectors_digest(vectors: np.ndarray) -> str:
    """sha256 of the item factors as contiguous float32 (what the index was built from)."""
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()


@dataclass(frozen=True)
class Tuning:
    """How training chose the search depth: the recall it measured there, on how many sampled users."""

    target_recall: float
    recall_at_10: float
    users: int
    search_depth: int
    pool: int
    reached: bool


#: The deepest search (or, for a PQ scan, the largest pool) :meth:`CandidateIndex.tune` tries: the cost
#: of an HNSW search, and of re-scoring the pool, grows about linearly with it.
MAX_SEARCH_DEPTH: Final = 4096
#: Items a PQ index's codebooks are trained on (a seeded sample of the catalog).
PQ_TRAINING_ROWS: Final = 65_536


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, *, block: int = 64) -> np.ndarray:
    """The ``k`` item codes of largest inner product per query, exactly (unordered), in blocks of queries
    so memory stays at ``block`` score rows."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ vectors.T
        out[start : start + block] = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return out


class CandidateIndex:
    """A faiss inner-product index over a model's item factors; ids are the model's item codes."""

    def __init__(
        self,
        index: Any,
        params: AnnParams,
        n_items: int,
        dim: int,
        vectors_sha256: str,
        tuning: Tuning | None = None,
    ) -> None:
        self._index = index
        self.params = params
        self.n_items = n_items
        self.dim = dim
        self.vectors_sha256 = vectors_sha256
        self.tuning = tuning
        self._set_search_depth()

    def tune(self, item_factors: np.ndarray, queries: np.ndarray, *, k: int = 10) -> Tuning | None:
        """Search just deep enough that the candidates hold ``params.target_recall`` of the ``queries``'
        exact top-``k`` (on average): doubling HNSW's depth from the pool up to :data:`MAX_SEARCH_DEPTH`,
        IVF's probed cells from one to all, or a PQ scan's pool up to :data:`MAX_SEARCH_DEPTH` items.

        Why at training time: the depth a given recall needs grows with the catalog and depends on how the
        factors are spread (``bench/results/ann_index.md``: HNSW32 at efSearch 256 recalled 0.95 at 10^5
        i.i.d. items, 0.72 at 10^6), so a fixed depth is either slow on small catalogs or inexact on large
        ones. The measured recall is kept in ``ann.json``; a target the deepest search misses is recorded
        as not reached rather than refused, since the core still re-scores the candidates exactly.
        None when ``target_recall`` is None or there are no queries.
        """
        target = self.params.target_recall
        if target is None or len(queries) == 0:
            return None
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.n_items)
        exact = exact_top(np.ascontiguousarray(item_factors, dtype=np.float32), queries, k)
        # the knob: a PQ scan's pool (it reads every code, so only re-scoring more helps); an HNSW search's
        # depth from the pool (it returns at most efSearch items); IVF's cells probed, from one to all
        if self.params.is_pq:
            value, last = self.params.pool, min(MAX_SEARCH_DEPTH, self.n_items)
        elif self.params.is_ivf:
            value, last = 1, self._nlist()
        else:
            value, last = self.params.pool, MAX_SEARCH_DEPTH
        while True:
            if self.params.is_pq:
                self.retune(search_depth=self.params.search_depth, pool=value)
            else:
                self.retune(search_depth=value, pool=self.params.pool)
            found = self.candidates(queries, self.params.pool)
            recall = float(np.mean([len(np.intersect1d(f, e)) / k for f, e in zip(found, exact, strict=True)]))
            if recall >= target or value >= last:
                break
            value = min(value * 2, last)
        self.tuning = Tuning(target, round(recall, 4), len(queries), self.params.search_depth, self.params.pool,
                             recall >= target)  # fmt: skip
        return self.tuning

    @classmethod
    def build(cls, item_factors: np.ndarray, params: AnnParams | None = None, *, threads: int = 0) -> CandidateIndex:
        """Index ``item_factors`` (n_items x rank) with ``threads`` OpenMP threads (0: faiss's default,
        every core). IVF cells are trained on at most 64 points per cell, enough for k-means and bounded;
        PQ codebooks on at most :data:`PQ_TRAINING_ROWS` items (16 centroids per code)."""
        import faiss  # deferred: a native library, loaded only by processes that build or use an index

        params = params or AnnParams()
        vectors = np.ascontiguousarray(item_factors, dtype=np.float32)
        n, dim = vectors.shape
        if params.is_pq and n < 16:
            raise AnnError(f"a PQ index needs at least 16 items (16 centroids per 4-bit code), got {n}")
        before = faiss.omp_get_max_threads()
        if threads:
            faiss.omp_set_num_threads(threads)
        try:
            index = faiss.index_factory(dim, params.faiss_factory(dim), faiss.METRIC_INNER_PRODUCT)
            if params.is_ivf or params.is_pq:
                rows = 64 * faiss.extract_index_ivf(index).nlist if params.is_ivf else PQ_TRAINING_ROWS
                sample = np.random.default_rng(0).permutation(n)[:rows]
                index.train(vectors[np.sort(sample)])
            else:
                index.hnsw.efConstruction = params.build_depth  # type: ignore[attr-defined]  # faiss's stubs: Index only
            index.add(vectors)
        finally:
            faiss.omp_set_num_threads(before)
        return cls(index, params, n, dim, vectors_digest(vectors))

    def retune(self, *, search_depth: int, pool: int) -> None:
        """Search deeper or shallower and re-score more or fewer candidates, without a rebuild (the build
        parameters stay): how ``bench/ann_index.py`` trades recall for time on one built index."""
        self.params = replace(self.params, search_depth=search_depth, pool=pool)
        self._set_search_depth()

    def _nlist(self) -> int:
        import faiss  # deferred: see build

        return int(faiss.extract_index_ivf(self._index).nlist)

    def _set_search_depth(self) -> None:
        if self.params.is_pq:
            return  # a PQ scan reads every code: nothing to set
        import faiss  # deferred: see build

        name = "nprobe" if self.params.is_ivf else "efSearch"
        faiss.ParameterSpace().set_index_parameter(self._index, name, self.params.search_depth)

    def candidates(self, queries: np.ndarray, n: int) -> np.ndarray:
        """The ``n`` items of largest inner product with each query row (int32 item codes, -1 padded when
        the index finds fewer)."""
        n = min(n, self.n_items)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise AnnError(f"queries of shape {queries.shape} for an index of dimension {self.dim}")
        if not (self.params.is_ivf or self.params.is_pq) and n > self.params.search_depth:
            import faiss  # deferred: see build

            deeper = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
            deeper.efSearch = n  # a graph search returns at most efSearch results
            _, ids = self._index.search(queries, n, params=deeper)
        else:
            _, ids = self._index.search(queries, n)
        return ids.astype(np.int32)

    def save(self, folder: Path) -> None:
        """Write ``ann.faiss`` and ``ann.json`` (sorted keys: re-saving the same index writes the same bytes)."""
        import faiss  # deferred: see build

        faiss.write_index(self._index, str(folder / ANN_INDEX_FILE))
        meta = {
            "schema_version": ANN_SCHEMA_VERSION,
            "library": "faiss",
            "faiss_version": faiss.__version__,
            "params": asdict(self.params),
            "n_items": self.n_items,
            "dim": self.dim,
            "index_sha256": _sha256_file(folder / ANN_INDEX_FILE),
            "vectors_sha256": self.vectors_sha256,
            "tuning": None if self.tuning is None else asdict(self.tuning),
        }
        (folder / ANN_META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, folder: Path, item_factors: np.ndarray) -> CandidateIndex | None:
        """The artifact's index, checked against its ``ann.json`` and the model's ``item_factors``; None
        when the artifact has none (a small catalog, or written before indexes existed)."""
        meta_path = folder / ANN_META_FILE
        if not meta_path.exists():
            return None
        meta = _read_meta(meta_path)
        path = folder / ANN_INDEX_FILE
        if not path.exists():
            raise AnnError(f"{folder}: {ANN_META_FILE} names an index but {ANN_INDEX_FILE} is missing")
        found = _sha256_file(path)
        if found != meta["index_sha256"]:
            named = meta["index_sha256"]
            raise AnnError(f"{path}: sha256 {found[:16]}... differs from {ANN_META_FILE}'s {named[:16]}...")
        n, dim = item_factors.shape
        if (n, dim) != (meta["n_items"], meta["dim"]) or vectors_digest(item_factors) != meta["vectors_sha256"]:
            raise AnnError(
                f"{path} was built from other item factors ({meta['n_items']} x {meta['dim']}, sha256 "
                f"{meta['vectors_sha256'][:16]}...) than the model's ({n} x {dim})"
            )
        import faiss  # deferred: see build

        tuning = Tuning(**meta["tuning"]) if meta.get("tuning") else None
        return cls(faiss.read_index(str(path)), AnnParams(**meta["params"]), n, dim, meta["vectors_sha256"], tuning)

    def __getstate__(self) -> dict[str, Any]:
        """Spark ships the model to its workers by pickle: send the index as faiss's own serialized bytes."""
        import faiss  # deferred: see build

        state = dict(self.__dict__)
        state["_index"] = faiss.serialize_index(self._index)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import faiss  # deferred: see build

        state["_index"] = faiss.deserialize_index(state["_index"])
        self.__dict__.update(state)
        self._set_search_depth()


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AnnError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("schema_version") != ANN_SCHEMA_VERSION:
        raise AnnError(f"{path}: schema_version {meta.get('schema_version') if isinstance(meta, dict) else None!r}, "
                       f"this recflow reads {ANN_SCHEMA_VERSION}")  # fmt: skip
    missing = {"params", "n_items", "dim", "index_sha256", "vectors_sha256"} - set(meta)
    if missing:
        raise AnnError(f"{path} lacks {sorted(missing)}")
    try:
        AnnParams(**meta["params"])
        if meta.get("tuning"):
            Tuning(**meta["tuning"])
    except TypeError as exc:
        raise AnnError(f"{path}: bad params or tuning {meta['params']!r}, {meta.get('tuning')!r}: {exc}") from exc
    return meta
