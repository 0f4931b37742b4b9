"""SharedStateWatch: every caller gets a read that started after it arrived; reads coalesce."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intelgraph_privacy.store import open_store
from intelgraph_privacy.store.versions import REDACTION_RULES, bump_version, read_versions
from sidecar.shared import SharedStateUnavailableError, SharedStateWatch


class CountingStore:
    """A read function over a real counter that records when each read started."""

    def __init__(self, delay: float = 0.01) -> None:
        self.value = 0
        self.delay = delay
        self.started: list[float] = []
        self.fail = False
        self._lock = threading.Lock()

    def read(self) -> dict[str, int]:
        with self._lock:
            self.started.append(time.monotonic())
            value = self.value
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("database unreachable")
        return {"counter": value}


def test_a_call_never_gets_a_read_that_started_before_it() -> None:
    source = CountingStore(delay=0.05)
    watch = SharedStateWatch(source.read)

    async def scenario() -> None:
        first = asyncio.create_task(watch.fresh())
        await asyncio.sleep(0.01)  # the first read is running now, with value 0
        source.value = 1  # a change committed after that read began
        second = await watch.fresh()
        assert (await first) == {"counter": 0}
        # The second call arrived after the change: it must see it.
        assert second == {"counter": 1}

    asyncio.run(scenario())
    assert len(source.started) == 2


def test_concurrent_callers_share_reads() -> None:
    source = CountingStore(delay=0.02)
    watch = SharedStateWatch(source.read)

    async def scenario() -> list[dict[str, int]]:
        return await asyncio.gather(*(watch.fresh() for _ in range(200)))

    results = asyncio.run(scenario())
    assert all(r == {"counter": 0} for r in results)
    # 200 callers arriving together: one read, at most one more for late arrivals.
    assert len(source.started) <= 2
    assert watch.reads == len(source.started)


def test_max_age_reuses_a_recent_read_and_invalidate_forgets_it() -> None:
    source = CountingStore(delay=0.0)
    watch = SharedStateWatch(source.read, max_age=60)

    async def scenario() -> None:
        assert await watch.fresh() == {"counter": 0}
        source.value = 5
        assert await watch.fresh() == {"counter": 0}  # within max_age: the old read
        watch.invalidate()
        assert await watch.fresh() == {"counter": 5}

    asyncio.run(scenario())
    assert len(source.started) == 2


def test_a_failed_read_fails_its_callers_and_the_next_call_reads_again() -> None:
    source = CountingStore(delay=0.0)
    source.fail = True
    watch = SharedStateWatch(source.read, max_age=60)

    async def scenario() -> None:
        results = await asyncio.gather(*(watch.fresh() for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, SharedStateUnavailableError) for r in results)
        assert "unreachable" in str(results[0])
        source.fail = False
        assert await watch.fresh() == {"counter": 0}

    asyncio.run(scenario())


def test_a_cancelled_caller_does_not_cancel_the_read_others_wait_on() -> None:
    source = CountingStore(delay=0.05)
    watch = SharedStateWatch(source.read)

    async def scenario() -> None:
        doomed = asyncio.create_task(watch.fresh())
        other = asyncio.create_task(watch.fresh())
        await asyncio.sleep(0.01)
        doomed.cancel()
        assert await other == {"counter": 0}

    asyncio.run(scenario())


@settings(max_examples=30, deadline=None)
@given(arrivals=st.lists(st.floats(min_value=0, max_value=0.03), min_size=1, max_size=25))
def test_every_caller_sees_every_change_committed_before_it_arrived(
    arrivals: list[float],
) -> None:
    """Linearisable reads: a change made before a call began is visible to that call."""
    source = CountingStore(delay=0.004)
    watch = SharedStateWatch(source.read)

    async def caller(delay: float) -> None:
        await asyncio.sleep(delay)
        source.value += 1  # a change committed just before this caller arrives
        committed = source.value
        seen = (await watch.fresh())["counter"]
        assert seen >= committed

    async def scenario() -> None:
        await asyncio.gather(*(caller(d) for d in arrivals))

    asyncio.run(scenario())


def test_counters_on_a_real_store(tmp_path: Path) -> None:
    store = open_store(None, data_dir=tmp_path)
    try:
        watch = SharedStateWatch(lambda: read_versions(store))
        assert asyncio.run(watch.fresh()) == {}
        with store.begin() as connection:
            assert bump_version(connection, REDACTION_RULES) == 1
        with store.begin() as connection:
            assert bump_version(connection, REDACTION_RULES) == 2
        assert asyncio.run(watch.fresh()) == {REDACTION_RULES: 2}
    finally:
        store.close()


@pytest.mark.postgres
def test_counters_on_postgresql(pg_store: object) -> None:
    from intelgraph_privacy.store import Store

    assert isinstance(pg_store, Store)
    before = read_versions(pg_store).get(REDACTION_RULES, 0)
    with pg_store.begin() as connection:
        bump_version(connection, REDACTION_RULES)
    assert read_versions(pg_store)[REDACTION_RULES] == before + 1


def test_the_version_reader_sees_every_commit_after_its_previous_read(store: object) -> None:
    """One long-lived connection must never keep reading an old snapshot (both backends)."""
    from intelgraph_privacy.store import Store
    from intelgraph_privacy.store.versions import REVOCATIONS, VersionReader

    assert isinstance(store, Store)
    reader = VersionReader(store)
    try:
        before = reader.read().get(REVOCATIONS, 0)
        for step in range(1, 4):
            with store.begin() as connection:  # another connection, as another replica
                bump_version(connection, REVOCATIONS)
            assert reader.read()[REVOCATIONS] == before + step
    finally:
        reader.close()


def test_the_version_reader_reconnects_after_a_failure(tmp_path: Path) -> None:
    from intelgraph_privacy.store.errors import StoreError
    from intelgraph_privacy.store.versions import VersionReader

    store = open_store(None, data_dir=tmp_path)
    reader = VersionReader(store)
    try:
        assert reader.read() == {}
        with store.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE state_versions RENAME TO moved")
        with pytest.raises(StoreError, match="shared state"):
            reader.read()
        with store.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE moved RENAME TO state_versions")
            bump_version(connection, REDACTION_RULES)
        assert reader.read() == {REDACTION_RULES: 1}
    finally:
        reader.close()
        store.close()


def test_inline_reads_happen_on_every_call_and_fail_closed() -> None:
    source = CountingStore(delay=0.0)
    watch = SharedStateWatch(source.read, inline=True)

    async def scenario() -> None:
        assert await watch.fresh() == {"counter": 0}
        source.value = 3
        assert await watch.fresh() == {"counter": 3}  # no caching without max_age
        source.fail = True
        with pytest.raises(SharedStateUnavailableError, match="unreachable"):
            await watch.fresh()

    asyncio.run(scenario())
    assert len(source.started) == 3 and watch.reads == 3
