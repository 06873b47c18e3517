"""The Python-worker side of staging batch scores: a task's rows written as Parquet, read back, checked.

Each task of the scoring ``mapInArrow`` (:func:`stage_scores`) hands every scored
Arrow batch, with the input users it was scored for, to a :class:`StagedFiles`. That writes the rows
with pyarrow into ``part-<partition>-<n>.parquet`` (a new file every :data:`FILE_USERS` users, one row
group per batch). When a file is complete it is read back from disk and checked, row group by row
group, against the input users of each batch
(:func:`recflow.batch.checks.user_checks`); the check rows go to ``<checks>/bucket=<b>/`` by a stable
hash of the user id, so one bucket holds every check row of its users whichever file they came from
(the suite's one-row-per-user rule then holds across files, bucket by bucket).

Why the worker writes, not Spark's Parquet writer:
* the rows are Arrow already: Spark's writer turned them into JVM rows first, and the staged files then
  had to be rewritten on the driver anyway, since parquet-java's footers differ between JVM processes
  (apache/parquet-java#3215) and re-runs must publish the same bytes;
* the checks then cost one read of a file the worker just wrote, instead of a second Spark pass over
  every staged row.

Deterministic and retry-safe: the names come from the partition and the file's place in it, the bytes
from the rows (pyarrow writes a fixed footer), and each file is written under a temporary name and
renamed, so a retried or speculative task writes the same files again, whole. The fault point
``batch.score.partition`` (:mod:`recflow.services.faults`) sits in every task attempt, after its first
batch is staged: ``kill:spark-executor*1`` there kills an executor mid-scoring
(``tests/integration/test_executor_lost.py``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from recflow.batch.checks import ExpectedUsers, user_checks
from recflow.constants import COL_USER
from recflow.models.base import Recommender
from recflow.scoring.arrow import COL_CODE, COL_TRAIN_SEEN, ArrowScorer, by_user, shipped_model, worker_model
from recflow.scoring.core import Ragged, ScorableModel, ScoringError
from recflow.scoring.explore import Explorer
from recflow.scoring.seen import COL_SEEN
from recflow.services import faults

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import DataFrame

#: Users per staged file (4 Arrow batches of 8,192): ~330k rows at k = 10, ~4 MB. A task keeps a file's
#: input users (~1 MB a batch) and check rows until the file is checked, so this bounds its memory.
FILE_USERS: Final = 32_768
#: Temporary names of files being written (left behind only by a killed attempt).
TMP_SUFFIX: Final = ".tmp"
#: The fault point in a scoring task (``docs/faults.md``): its first Arrow batch is scored and staged.
SCORE_POINT: Final = "batch.score.partition"
#: What each task reports to the driver, one row per staged file (Spark DDL).
FILE_REPORT_SCHEMA: Final = "file string, users long, rows long"


@dataclass(frozen=True)
class StagingPlan:
    """Where a run stages its scores and checks, and into how many check buckets (chunks) they go."""

    scores_dir: str
    checks_dir: str
    buckets: int


def bucket_of(users: pa.Array, buckets: int) -> np.ndarray:
    """A stable bucket per user id (pandas' fixed-key SipHash), the same in every process and run."""
    import pandas as pd

    hashes = pd.util.hash_array(users.to_numpy(zero_copy_only=False).astype(object))
    return (hashes % np.uint64(buckets)).astype(np.int64)


def _tmp_name(final: Path) -> Path:
    """A hidden name beside ``final``, unique to this attempt, that the driver knows to clean up."""
    return final.with_name(f".{final.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")


def _replace(write: Callable[[Path], object], final: Path) -> None:
    """Run ``write(tmp)`` then rename ``tmp`` to ``final``: readers see no half-written file."""
    tmp = _tmp_name(final)
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


class StagedFiles:
    """One task's staged score files and their check rows (see the module docstring).

    Memory: rows go into the open file as they come, one row group per scored batch; until the file is
    complete only each batch's input users (ids, seen items) are kept. The file is then read back and
    checked row group by row group, so a worker holds one batch's rows at a time, whatever the number
    of users.
    """

    def __init__(self, plan: StagingPlan, partition: int, items: pa.Array) -> None:
        self.plan = plan
        self.partition = partition
        self.items = items
        self.files = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp = Path()
        self._schema: pa.Schema | None = None
        self._batches: list[tuple[bool, ExpectedUsers]] = []  # (wrote a row group, its input users)
        self._n_users = 0

    @property
    def full(self) -> bool:
        return self._n_users >= FILE_USERS

    def _name(self) -> str:
        return f"part-{self.partition:05d}-{self.files:03d}.parquet"

    def add(self, rows: pa.RecordBatch, users: ExpectedUsers) -> None:
        """One scored batch: its rows (written now) and the input users they were scored for."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            self._tmp = _tmp_name(Path(self.plan.scores_dir) / self._name())
            self._schema = rows.schema
            self._writer = pq.ParquetWriter(self._tmp, rows.schema, compression="snappy")
        if rows.num_rows:
            self._writer.write_table(pa.Table.from_batches([rows]), row_group_size=rows.num_rows)
        self._batches.append((rows.num_rows > 0, users))
        self._n_users += len(users.ids)

    def flush(self) -> pa.RecordBatch | None:
        """Complete the open file, check it, and return its report row (None: nothing pending)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None or self._schema is None:
            return None
        name = self._name()
        path = Path(self.plan.scores_dir) / name
        self._writer.close()
        os.replace(self._tmp, path)
        checks: dict[int, list[pa.Table]] = {}
        rows = 0
        staged = pq.ParquetFile(path)
        try:
            written = sum(wrote for wrote, _ in self._batches)
            if staged.metadata.num_row_groups != written:
                raise ScoringError(f"{path} holds {staged.metadata.num_row_groups} row groups, {written} were written")
            group = 0
            for wrote, users in self._batches:
                table = staged.read_row_group(group) if wrote else self._schema.empty_table()
                group += wrote
                rows += table.num_rows
                frame = user_checks(table, users, self.items)
                buckets = bucket_of(frame.column(COL_USER).combine_chunks(), self.plan.buckets)
                for b in np.unique(buckets):
                    checks.setdefault(int(b), []).append(frame.filter(pa.array(buckets == b)))
        finally:
            staged.close()
        for b, parts in checks.items():
            folder = Path(self.plan.checks_dir) / f"bucket={b}"
            folder.mkdir(parents=True, exist_ok=True)
            _replace(partial(pq.write_table, pa.concat_tables(parts)), folder / name)
        report = pa.RecordBatch.from_pydict(
            {"file": [name], "users": [self._n_users], "rows": [rows]},
            schema=pa.schema([("file", pa.string()), ("users", pa.int64()), ("rows", pa.int64())]),
        )
        self.files += 1
        self._writer, self._schema, self._batches, self._n_users = None, None, [], 0
        return report


def _expected_users(model: ScorableModel, k: int, rb: pa.RecordBatch) -> ExpectedUsers:
    """What the inputs say each user of ``rb`` should get, decoded from the Arrow batch by pyarrow
    compute rather than by the scorer's own decoding, so a decoding bug cannot hide from the checks."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def ragged(column: str) -> Ragged:
        lists = rb.column(column)
        lengths = np.asarray(pc.list_value_length(lists).fill_null(0), dtype=np.int64)
        # copies: a batch read from Spark's Arrow stream is one buffer, and a view into it would keep the
        # whole batch (factor rows included) alive until the file is checked
        return Ragged(np.r_[0, np.cumsum(lengths)], np.array(pc.list_flatten(lists), dtype=np.int32))

    ids = pa.concat_arrays([rb.column(COL_USER)])
    unknown = np.asarray(rb.column(COL_CODE).is_null(), dtype=bool)
    trained = ragged(COL_TRAIN_SEEN) if COL_TRAIN_SEEN in rb.schema.names else None
    return ExpectedUsers.of_batch(model, k, ids, np.where(unknown, -1, 0), ragged(COL_SEEN), trained)


def stage_scores(
    inputs: DataFrame,
    model: Recommender,
    *,
    version: str,
    k: int,
    partitions: int,
    plan: StagingPlan,
    explorer: Explorer | None = None,
    day: date | None = None,
) -> DataFrame:
    """One row per staged file (:data:`recflow.batch.staging.FILE_REPORT_SCHEMA`); collecting it makes
    every task score its users, write their rows under ``plan.scores_dir`` and their check rows under
    ``plan.checks_dir`` (:mod:`recflow.batch.staging`). ``explorer`` fills the exploration slots of
    ``day`` (:mod:`recflow.scoring.explore`)."""
    key, payload = shipped_model(model, version)

    def stage(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        scorer = ArrowScorer(
            worker_model(key, payload), version=version, k=k, n_candidates=None, explorer=explorer, day=day
        )
        context = TaskContext.get()
        files = StagedFiles(plan, context.partitionId() if context else 0, scorer.items)
        for n, rb in enumerate(batches):
            files.add(scorer(rb), _expected_users(scorer.model, k, rb))
            if n == 0:
                faults.hit(SCORE_POINT)
            if files.full and (report := files.flush()) is not None:
                yield report
        if (report := files.flush()) is not None:
            yield report

    return by_user(inputs, partitions).mapInArrow(stage, schema=FILE_REPORT_SCHEMA)
