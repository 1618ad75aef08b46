"""Progress of long jobs: a tqdm bar on a terminal, periodic plain lines in a log (CI, nohup,
a launch), where a bar prints nothing useful."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")
LOG_INTERVAL_S = 30.0


def progress(
    items: Iterable[T],
    desc: str,
    unit: str = "it",
    total: int | None = None,
    initial: int = 0,
    leave: bool = True,
    stream: TextIO | None = None,
    interval_s: float = LOG_INTERVAL_S,
) -> Iterator[T]:
    """``items``, reporting progress on ``stream`` (stderr): a bar on a terminal, else a line
    ``desc: done/total unit (pct), elapsed, rate`` every ``interval_s`` seconds and at the end."""
    stream = sys.stderr if stream is None else stream
    if total is None and hasattr(items, "__len__"):
        total = initial + len(items)  # type: ignore[arg-type]
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, unit=unit, total=total, initial=initial, leave=leave, file=stream)
        return
    t0 = last = time.monotonic()
    done = initial

    def line() -> None:
        elapsed = time.monotonic() - t0
        rate = (done - initial) / elapsed if elapsed > 0 else float("nan")
        of = f"/{total}" if total else ""
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        print(f"{desc}: {done}{of} {unit}{pct}, {elapsed:.0f} s, {rate:.2f} {unit}/s", file=stream, flush=True)

    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= interval_s:
            last = now
            line()
    line()


__all__ = ["LOG_INTERVAL_S", "progress"]
