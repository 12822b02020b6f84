"""The codec's lean model building: the same pharox models ``model_construct`` makes.

``codec.builder`` skips ``model_construct``'s walk over aliases and defaults; these tests
hold it to the same result (fields, their order, the fields set, equality, what pydantic
does with the model afterwards) and check that a model with more than plain fields falls
back to ``model_construct``.
"""

from __future__ import annotations

import pickle
from datetime import datetime, timezone
from typing import Any
from uuid import RFC_4122, UUID, uuid4

from pharox import Lease, LeaseStatus, Proxy, ProxyCredentials, ProxyProtocol, ProxyStatus
from pydantic import BaseModel, Field

from pharox_redis import codec

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def lease_fields() -> dict[str, Any]:
    return {
        "id": uuid4(),
        "proxy_id": uuid4(),
        "consumer_id": uuid4(),
        "pool_id": uuid4(),
        "pool_name": "pool",
        "status": LeaseStatus.ACTIVE,
        "acquired_at": NOW,
        "expires_at": NOW,
        "released_at": None,
    }


def test_built_lease_is_what_model_construct_makes() -> None:
    fields = lease_fields()
    built = codec.builder(Lease)(dict(fields))
    constructed = Lease.model_construct(**fields)
    assert type(built) is Lease
    assert built == constructed
    assert list(built.__dict__) == list(Lease.model_fields)
    assert built.model_fields_set == constructed.model_fields_set
    assert repr(built) == repr(constructed)
    assert built.model_dump() == constructed.model_dump()
    built.released_at = NOW  # assignment works as on any model
    assert built.released_at == NOW and built.model_fields_set == constructed.model_fields_set
    copy = built.model_copy(update={"status": LeaseStatus.RELEASED})
    assert copy.status is LeaseStatus.RELEASED and built.status is LeaseStatus.ACTIVE


def test_decoded_proxy_is_what_model_construct_makes() -> None:
    proxy = Proxy(
        host="203.0.113.7",
        port=8080,
        protocol=ProxyProtocol.SOCKS5,
        pool_id=uuid4(),
        status=ProxyStatus.ACTIVE,
        checked_at=NOW,
        credentials=ProxyCredentials(user="u", password="p"),
        country="AR",
        latitude=1.5,
        longitude=-2.25,
        asn=64500,
        max_concurrency=3,
    )
    proxy_id, state, record = codec.encode_proxy(proxy)
    decoded = codec.decode_proxy(proxy_id, proxy.pool_id, state, b"2", record)
    expected = proxy.model_copy(update={"current_leases": 2})
    assert decoded == expected
    assert list(decoded.__dict__) == list(Proxy.model_fields)
    assert decoded.credentials == proxy.credentials
    assert decoded.model_fields_set == set(Proxy.model_fields)
    assert decoded.url == expected.url
    assert codec.decode_proxy(proxy_id.encode(), proxy.pool_id, state, 2, record) == expected


def test_new_ids_are_random_version_4_uuids() -> None:
    ids = [codec.new_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for uid in ids[:50]:
        assert uid.version == 4 and uid.variant == RFC_4122
        assert UUID(str(uid)) == uid and hash(UUID(str(uid))) == hash(uid)
        assert pickle.loads(pickle.dumps(uid)) == uid
    assert {uid.int >> 64 & 0xF for uid in ids} != {0}  # random bits around the version


def test_ids_that_repeat_are_parsed_once() -> None:
    uid = uuid4()
    first = codec.known_id(str(uid))
    assert first == uid and codec.known_id(str(uid)) is first
    assert codec.known_id(str(uid).encode()) == uid


def test_a_model_with_more_than_plain_fields_is_built_by_model_construct() -> None:
    class Aliased(BaseModel):
        value: int = Field(alias="v")

    class WithPostInit(BaseModel):
        value: int

        def model_post_init(self, context: Any) -> None:
            object.__setattr__(self, "seen", True)

    assert codec.builder(Aliased)({"v": 1}).value == 1
    built = codec.builder(WithPostInit)({"value": 1})
    assert built.value == 1 and built.__dict__.get("seen") is True
