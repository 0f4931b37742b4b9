"""Fresh reads of the state that replicas share through the store (rules, revocations).

A change made through any replica must apply to the next request everywhere. Each request
therefore waits for a read of the store's change counters that *started after it arrived*; reads
are coalesced, so under load one read serves every request that arrived while the previous read
was running, and the store sees about one query per round trip, not one per request.
`max_age` > 0 relaxes this: a read younger than that is good enough.

A read that costs less than a thread hop (SQLite in-process: about 20 µs) runs `inline` on the
event loop instead: each request then simply reads before it is served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor


class SharedStateUnavailableError(Exception):
    """The store could not be read: requests must not be served under possibly stale rules."""


class SharedStateWatch:
    """Coalesced, fresh reads of `read()` (the store's change counters)."""

    def __init__(
        self,
        read: Callable[[], dict[str, int]],
        *,
        max_age: float = 0.0,
        executor: Executor | None = None,
        inline: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`read` runs on `executor` (default: the loop's), one read at a time, or on the event
        loop itself with `inline` (only for reads that never wait on a network)."""
        self._read = read
        self._executor = executor
        self.inline = inline
        self.max_age = max_age
        self._clock = clock
        self._running: asyncio.Future[dict[str, int]] | None = None
        #: The read that will start when the running one ends (requests arriving now wait on it).
        self._next: asyncio.Future[dict[str, int]] | None = None
        self._last: dict[str, int] | None = None
        self._last_started = float("-inf")
        self.reads = 0

    def invalidate(self) -> None:
        """Forget the last read: the next request waits for a new one (after a local change)."""
        self._last_started = float("-inf")

    async def fresh(self) -> dict[str, int]:
        """Counters read after this call began (or within `max_age`); raises if unreadable."""
        if (
            self.max_age > 0
            and self._last is not None
            and self._clock() - self._last_started <= self.max_age
        ):
            return self._last
        if self.inline:
            return self._read_inline()
        waiting = self._next
        if waiting is None:
            waiting = self._next = asyncio.get_running_loop().create_future()
            if self._running is None:
                self._start()
        # shield: one cancelled request must not cancel the read others wait on.
        return await asyncio.shield(waiting)

    def _read_inline(self) -> dict[str, int]:
        started = self._clock()
        try:
            versions = self._read()
        except Exception as exc:
            raise SharedStateUnavailableError(str(exc)) from exc
        finally:
            self.reads += 1
        self._last, self._last_started = versions, started
        return versions

    def _start(self) -> None:
        waiting = self._next
        assert waiting is not None
        self._next = None
        started = self._clock()
        loop = asyncio.get_running_loop()
        self._running = loop.run_in_executor(self._executor, self._read)

        def finished(task: asyncio.Future[dict[str, int]]) -> None:
            self._running = None
            self.reads += 1
            if task.cancelled() or task.exception() is not None:
                cause = "cancelled" if task.cancelled() else str(task.exception())
                waiting.set_exception(SharedStateUnavailableError(cause))
                waiting.exception()  # retrieved: no "never retrieved" warning without waiters
            else:
                versions = task.result()
                self._last, self._last_started = versions, started
                waiting.set_result(versions)
            # Nobody may be left waiting for a read that never starts.
            if self._next is not None:
                self._start()

        self._running.add_done_callback(finished)
