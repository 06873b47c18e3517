"""Records the broker accepted compressed but that decompress beyond what the scorer's producer may send.

The issue's reproduction: a request compressed by its producer (zstd), small on the wire, whose value is
megabytes once decompressed. Before, the dead-letter produce raised ``MSG_SIZE_TOO_LARGE`` and the
scorer exited; after a restart the record was committed with neither an answer nor a dead letter
(``reconcile``: ``lost: 1``). Now each such record gets a dead letter (whole when it fits, else by
reference with the omitted part's size and sha256), an identifiable caller gets an error answer, the
scorer keeps serving, and ``reconcile`` counts 0 lost. Real broker, real scorer process, real registry.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from scorer_support import ScorerWorld, dead_letter_consumer, make_world, wait

from recflow.config.settings import Settings
from recflow.streaming.client import AnswerListener
from recflow.streaming.protocol import MAX_DEAD_LETTER_BYTES, header_map
from recflow.streaming.reconcile import reconcile


@pytest.fixture(scope="module")
def world(live_services: Settings, tmp_path_factory: pytest.TempPathFactory) -> ScorerWorld:
    return make_world(live_services, tmp_path_factory.mktemp("oversized-models"))


@pytest.fixture
def dlq(world: ScorerWorld) -> Iterator[Any]:
    with dead_letter_consumer(world) as consumer:
        yield consumer


def _produce_compressed(world: ScorerWorld, records: list[tuple[bytes | None, bytes]]) -> list[tuple[int, int]]:
    """Produce with zstd and a 64 MB client limit, as a caller may; returns each record's (partition, offset)."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": world.settings.kafka.bootstrap_servers,
            "compression.type": "zstd",
            "message.max.bytes": 64 << 20,
            "linger.ms": 0,
        }
    )
    where: dict[int, tuple[int, int]] = {}
    for i, (key, value) in enumerate(records):

        def done(err: Any, msg: Any, i: int = i) -> None:
            assert err is None, f"the broker must accept record {i} (compressed): {err}"
            where[i] = (msg.partition(), msg.offset())

        producer.produce(world.settings.kafka.score_requests_topic, key=key, value=value, on_delivery=done)
        producer.flush(30)
    return [where[i] for i in range(len(records))]


def _padded(request_id: str, size: int) -> bytes:
    head = json.dumps({"request_id": request_id, "user_id": "u1"})[:-1].encode() + b', "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


HUGE = _padded("r-huge", 12 << 20)  # decompresses far beyond the producer's 4 MiB: by reference
LARGE = _padded("r-large", 2 << 20)  # over the request limit, under the producer's: dead-lettered whole
BIG_KEY = b"k" * (1 << 20)  # a valid request whose key is too large to echo on an answer


def test_oversized_compressed_records_are_dead_lettered_and_nothing_is_lost(world: ScorerWorld, dlq: Any) -> None:
    scorer = world.start("oversized")
    listener = AnswerListener(world.settings.kafka)
    since = int(time.time() * 1000)
    try:
        good = json.dumps({"request_id": "after-oversized", "user_id": "u3", "k": 5}).encode()
        records = [
            (b"k-huge", HUGE),
            (None, HUGE),
            (b"k-large", LARGE),
            (BIG_KEY, json.dumps({"request_id": "r-bigkey", "user_id": "u2"}).encode()),
            (b"after-oversized", good),
        ]
        where = _produce_compressed(world, records)
        wait(lambda: listener.count({b"after-oversized"}) == 1, 60, "the next request's answer")
        assert scorer.alive(), f"the scorer died; log: {scorer.log_path}"

        dead: dict[tuple[int, int], Any] = {}
        deadline = time.monotonic() + 30
        while len(dead) < 4 and time.monotonic() < deadline:
            for msg in dlq.consume(10, 0.5):
                if msg.error() is None:
                    h = header_map(msg.headers())
                    dead[(int(h["recflow.source.partition"]), int(h["recflow.source.offset"]))] = msg
        for (key, value), spot in zip(records[:2], where[:2], strict=True):
            msg = dead[spot]
            h = header_map(msg.headers())
            assert h["recflow.reason"] == "oversize" and msg.value() is None, h
            assert h["recflow.value.omitted"] == "too_large"
            assert int(h["recflow.value.bytes"]) == len(value) > MAX_DEAD_LETTER_BYTES
            assert h["recflow.value.sha256"] == hashlib.sha256(value).hexdigest()
            assert msg.key() == key
        large = dead[where[2]]
        assert large.value() == LARGE and large.key() == b"k-large", "fits: dead-lettered byte for byte"
        assert "recflow.value.omitted" not in header_map(large.headers())
        big_key = dead[where[3]]
        assert header_map(big_key.headers())["recflow.reason"] == "oversize" and big_key.key() == BIG_KEY

        wait(lambda: listener.answers(b"k-huge") and listener.answers(b"k-large"), 30, "the error answers")
        for key in (b"k-huge", b"k-large"):
            doc = listener.answers(key)[0].doc
            assert doc["source"] == "error" and doc["error"]["code"] == "oversize", doc
        answer = listener.answers(b"after-oversized")[0].doc
        assert answer["error"] is None and len(answer["items"]) == 5

        wait(lambda: (scorer.status() or {}).get("lag") == 0, 30, "lag 0")
        rec = reconcile(world.settings.kafka, since_ms=since)
        assert rec.lost == 0 and rec.requests >= len(records), rec
        assert (scorer.status() or {}).get("stuck_dead_letters") == 0
    finally:
        listener.close()
        scorer.stop()
