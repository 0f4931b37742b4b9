"""Two sidecar replicas sharing one PostgreSQL store: every request audited, one intact chain."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from intelgraph_privacy.audit import AuditLog
from intelgraph_privacy.store import open_store
from tests.sidecar_env import RecordingUpstream, Sidecar, SigningKeys, start_sidecar

pytestmark = pytest.mark.postgres


@pytest.fixture
def replicas(
    fresh_pg_url: str, upstream: RecordingUpstream, test_keys: SigningKeys, tmp_path: Path
) -> Iterator[list[Sidecar]]:
    running = [
        start_sidecar(
            upstream.graphql_url, test_keys, tmp_path / f"replica{i}", **{"store.url": fresh_pg_url}
        )
        for i in range(2)
    ]
    yield running
    for replica in running:
        replica.server.stop()


def test_replicas_share_one_audit_chain(
    replicas: list[Sidecar], test_keys: SigningKeys, fresh_pg_url: str
) -> None:
    token = test_keys.token()

    def call(i: int) -> int:
        replica = replicas[i % 2]
        return replica.query(f"query Op{i} {{ people(first: 2) {{ name ssn }} }}", token).status

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, range(60)))
    assert statuses == [200] * 60
    for replica in replicas:
        replica.flush_audit()
    store = open_store(fresh_pg_url)
    try:
        log = AuditLog(store)
        verification = log.verify()
        assert verification.ok, verification.reason
        assert verification.count == 60
        names = {e.record.operation_name for e in log.tail(100)}
        assert names == {f"Op{i}" for i in range(60)}
        assert all(e.record.redacted == {"Person.ssn": {"null": 2}} for e in log.tail(100))
    finally:
        store.close()
