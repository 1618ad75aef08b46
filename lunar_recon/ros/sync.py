"""Time synchroniser with message_filters' semantics, for installs without message_filters.

Exact policy: a set is emitted when every input has a message with the same stamp.
Approximate policy: a set is emitted when every input has a message within ``slop`` seconds
of the newest pivot.  Stamps are compared as integer nanoseconds (a float of seconds cannot
tell apart stamps ~50 ns apart at today's epoch), the slop converted to nanoseconds once.
Queues are bounded (``queue_size`` per input); the newest complete set wins and everything
older is dropped, so the consumer always sees the latest pair.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Sequence


def stamp_nanoseconds(msg: Any) -> int:
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


class TimeSynchronizer:
    def __init__(self, n_inputs: int, queue_size: int, callback: Callable[..., None], slop: float = 0.0,
                 approximate: bool = False, stamp: Callable[[Any], int] = stamp_nanoseconds):
        if n_inputs < 1 or queue_size < 1:
            raise ValueError("need at least one input and queue_size >= 1")
        self.queues: list[deque] = [deque(maxlen=queue_size) for _ in range(n_inputs)]
        self.callback = callback
        if not slop >= 0:
            raise ValueError(f"slop must be >= 0 s, got {slop}")
        self.slop_ns = int(round(float(slop) * 1e9)) if approximate else 0
        self.approximate = approximate
        self.stamp = stamp
        self.dropped = 0  # messages that left a queue without ever being part of a set
        self._lock = threading.Lock()

    def add(self, index: int, msg: Any) -> None:
        with self._lock:
            q = self.queues[index]
            if len(q) == q.maxlen:
                self.dropped += 1
            q.append((self.stamp(msg), msg))
            found = self._match()
        if found is not None:
            self.callback(*found)

    def _match(self):
        # Try pivots from the newest stamp of the first input backwards: the newest complete set wins.
        for t_pivot, _ in sorted(self.queues[0], key=lambda e: -e[0]):
            chosen = []
            for q in self.queues:
                best = min(q, key=lambda e: abs(e[0] - t_pivot), default=None)
                if best is None or abs(best[0] - t_pivot) > self.slop_ns:
                    break
                chosen.append(best)
            else:
                for q, (t, _) in zip(self.queues, chosen):
                    # drop the chosen message and everything older
                    while q and q[0][0] <= t:
                        e = q.popleft()
                        if e[0] < t:
                            self.dropped += 1
                return tuple(m for _, m in chosen)
        return None


def make_synchronizer(subscribers: Sequence[Any], queue_size: int, callback: Callable[..., None],
                      approximate: bool, slop: float):
    """message_filters' synchroniser when it imports (every real ROS 2 install), else ours."""
    try:
        import message_filters
    except ImportError:
        return None

    if approximate:
        sync = message_filters.ApproximateTimeSynchronizer(subscribers, queue_size, slop)
    else:
        sync = message_filters.TimeSynchronizer(subscribers, queue_size)
    sync.registerCallback(callback)
    return sync
