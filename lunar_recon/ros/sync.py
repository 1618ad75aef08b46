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

from .conversions import stamp_ns


def stamp_nanoseconds(msg: Any) -> int:
    """A stamped message's header stamp in nanoseconds."""
    return stamp_ns(msg.header.stamp)


class TimeSynchronizer:
    def __init__(
        self,
        n_inputs: int,
        queue_size: int,
        callback: Callable[..., None],
        slop: float = 0.0,
        approximate: bool = False,
        stamp: Callable[[Any], int] = stamp_nanoseconds,
    ):
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


def make_synchronizer(subscribers: Sequence[Any], queue_size: int, callback: Callable[..., None], approximate: bool, slop: float):
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


class CameraInfoCache:
    """One camera's recent camera_info messages, for pairing images with them outside the
    synchroniser: the message of an image's own stamp when it has arrived, else the newest.
    Bounded: the ``capacity`` newest stamps are kept."""

    def __init__(self, capacity: int = 16):
        self.by_stamp: dict[int, Any] = {}
        self.capacity = max(1, capacity)
        self.newest: Any = None
        self._newest_ns = -1

    def add(self, msg: Any) -> None:
        t = stamp_nanoseconds(msg)
        self.by_stamp[t] = msg
        while len(self.by_stamp) > self.capacity:
            del self.by_stamp[min(self.by_stamp)]
        if t >= self._newest_ns:
            self.newest, self._newest_ns = msg, t

    def lookup(self, stamp_ns: int, exact_first: bool = True) -> tuple[Any, bool]:
        """(camera_info, substituted): the message of ``stamp_ns`` when ``exact_first`` and it
        arrived, else the newest (substituted True); (None, True) before any arrived."""
        if exact_first and stamp_ns in self.by_stamp:
            return self.by_stamp[stamp_ns], False
        return self.newest, True


class PairMonitor:
    """Counts stereo pairs that arrive incomplete: a stamp some inputs delivered and another
    never did, by the time a newer stamp was complete on every input (messages arrive in stamp
    order, so the missing one is lost: dropped in transport, or too late) or ``horizon_s`` after
    its first message.  ``slop_s``: inputs within it count as one stamp (approximate sync).
    Bounded: at most ``max_pending`` stamps are tracked."""

    def __init__(self, names: Sequence[str], slop_s: float = 0.0, horizon_s: float = 1.0, max_pending: int = 64):
        self.names = list(names)
        self.slop_ns = int(round(slop_s * 1e9))
        self.horizon_ns = int(round(horizon_s * 1e9))
        self.max_pending = max_pending
        self.pending: dict[int, tuple[int, set[int]]] = {}  # stamp -> (first arrival, inputs seen)
        self.complete = 0
        self.incomplete = 0
        self.missing: dict[str, int] = {n: 0 for n in self.names}  # input -> incomplete pairs it was missing from
        self.received: dict[str, int] = {n: 0 for n in self.names}  # input -> messages
        self._lock = threading.Lock()

    def arrived(self, index: int, stamp_ns: int, now_ns: int) -> None:
        with self._lock:
            self.received[self.names[index]] += 1
            key = next((s for s in self.pending if abs(s - stamp_ns) <= self.slop_ns), stamp_ns)
            first, seen = self.pending.setdefault(key, (now_ns, set()))
            seen.add(index)
            if len(seen) == len(self.names):
                del self.pending[key]
                self.complete += 1
                for s in [s for s in self.pending if s < key]:  # older and still open: lost
                    self._count(s)
            for s in [s for s, (t, _) in self.pending.items() if now_ns - t > self.horizon_ns]:
                self._count(s)
            while len(self.pending) > self.max_pending:
                self._count(min(self.pending))

    def count(self, name: str) -> None:
        """A message on an input that is not paired here (e.g. camera_info with camera_info_sync 'latest')."""
        with self._lock:
            self.received[name] = self.received.get(name, 0) + 1

    def _count(self, stamp: int) -> None:
        _, seen = self.pending.pop(stamp)
        self.incomplete += 1
        for i, name in enumerate(self.names):
            if i not in seen:
                self.missing[name] += 1
