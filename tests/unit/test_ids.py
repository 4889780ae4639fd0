"""Job ids are UUIDv7: valid, unique, ordered by creation time."""

from __future__ import annotations

import pickle
from uuid import UUID

from queue_service.core.ids import uuid7, uuid7_many


def test_uuid7_sets_version_and_variant_and_embeds_the_time() -> None:
    u = uuid7(now_ms=1_700_000_000_123)
    assert u.version == 7 and u.variant == "specified in RFC 4122"
    assert u.int >> 80 == 1_700_000_000_123


def test_ids_are_unique_and_later_ids_sort_after_earlier_ones() -> None:
    batch = uuid7_many(10_000)
    assert len(set(batch)) == 10_000
    assert uuid7(now_ms=2) > uuid7(now_ms=1)


def test_batch_ids_behave_as_uuids_built_the_public_way() -> None:
    for u in uuid7_many(100):
        twin = UUID(str(u))
        assert (u == twin, hash(u) == hash(twin), u.version, u.variant) == (
            True,
            True,
            7,
            "specified in RFC 4122",
        )
        assert pickle.loads(pickle.dumps(u)) == u and u.bytes == twin.bytes


def test_a_batch_of_ids_increases_in_order() -> None:
    batch = uuid7_many(5_000)
    assert batch == sorted(batch) and len(set(batch)) == 5_000
