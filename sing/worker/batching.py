# SPDX-License-Identifier: GPL-3.0-or-later
"""Continuous batching: requests with the same (model, method, output dtype, params) leave in
batches of at most `max_batch`, queued at most `max_queue` deep.

The compute thread runs one batch at a time. While it is idle a request is dispatched at once
(batch 1 pays no waiting); while it is busy, requests accumulate, and the moment it is free the
oldest group goes as one batch. Batches therefore grow with the load on their own, with no timer.
`max_wait_s` (default 0) optionally holds a lone request on an *idle* worker for company (useful
only where a bigger batch is nearly free, e.g. a GPU, and latency matters less).

Pure bookkeeping (no sockets, no torch) so that it is easy to test. The server asks `ready(now)`
whenever its compute thread is idle, and `next_deadline()` to know how long it may sleep.
"""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Pending:
    key: tuple
    item: Any                       # the request + its envelope
    t_arrival: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, max_batch: int = 16, max_wait_s: float = 0.0, max_queue: int = 256):
        if max_batch < 1 or max_wait_s < 0 or max_queue < 1:
            raise ValueError("max_batch ≥ 1, max_wait_s ≥ 0 and max_queue ≥ 1 are required")
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self._groups: "OrderedDict[tuple, deque[Pending]]" = OrderedDict()
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, key: tuple, item: Any, now: float | None = None) -> bool:
        """Queue an item; False when the queue is full (the caller replies 'busy')."""
        if self._n >= self.max_queue:
            return False
        self._groups.setdefault(key, deque()).append(
            Pending(key, item, time.monotonic() if now is None else now))
        self._n += 1
        return True

    def next_deadline(self) -> float | None:
        """Monotonic time at which the oldest group is due on an idle worker, or None when empty."""
        if not self._n:
            return None
        return min(q[0].t_arrival for q in self._groups.values()) + self.max_wait_s

    def ready(self, now: float | None = None) -> list[Pending]:
        """The batch to run now that the compute thread is idle (one group, oldest first, at most
        max_batch), or [] if nothing is due. A group is due when it holds max_batch items or when
        its oldest waited max_wait_s (0: at once)."""
        now = time.monotonic() if now is None else now
        best = None
        for key, q in self._groups.items():
            due = len(q) >= self.max_batch or now - q[0].t_arrival >= self.max_wait_s
            if due and (best is None or q[0].t_arrival < self._groups[best][0].t_arrival):
                best = key
        if best is None:
            return []
        q = self._groups[best]
        out = [q.popleft() for _ in range(min(self.max_batch, len(q)))]
        if not q:
            del self._groups[best]
        self._n -= len(out)
        return out

    def drain(self) -> list[Pending]:
        out = [p for q in self._groups.values() for p in q]
        self._groups.clear()
        self._n = 0
        return out
