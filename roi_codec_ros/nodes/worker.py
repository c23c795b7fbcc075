"""Latest-frame-wins processing and sliding-window rates (plain Python, no ROS).

A ROS callback only hands the newest frame to ``LatestFrameWorker.submit``; one worker thread does the heavy
work.  A frame still waiting when a newer one arrives is dropped (and counted), so when encoding is slower
than the camera the latency stays bounded by one frame of waiting instead of growing with a queue.
"""
from __future__ import annotations

import abc
import collections
import threading
import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class _WorkerThread(abc.ABC):
    """One daemon thread that handles what a subclass queues, one item at a time, and outlives a bad item.

    Subclasses hold the waiting items (under ``_cond``) and implement ``_has_work``, ``_take`` (the arguments of
    the next ``handle`` call) and ``_discard`` (drop what waits, on stop)."""

    def __init__(self, handle: Callable[..., None], on_error: Callable[[BaseException], None], name: str):
        self._handle = handle
        self._on_error = on_error
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self.submitted = self.dropped = self.handled = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @abc.abstractmethod
    def _has_work(self) -> bool:
        """Whether an item waits (called under ``_cond``)."""

    @abc.abstractmethod
    def _take(self) -> tuple:
        """Remove the next item and return the arguments of its ``handle`` call (under ``_cond``)."""

    @abc.abstractmethod
    def _discard(self) -> None:
        """Drop every waiting item (under ``_cond``, on stop)."""

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending or running (for tests and shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._has_work() or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called: a handler checks it between stages to give up a frame early."""
        return self._stopping

    def stop(self, timeout: float = 1.0) -> bool:
        """Discard what waits, let the item in progress end, and end the thread; False if it is still running
        after ``timeout`` s (a long encode cannot be interrupted: the caller exits anyway, the thread is a daemon)."""
        with self._cond:
            self._stopping = True
            self._discard()
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_work() and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                args = self._take()
                self._busy = True
            try:
                self._handle(*args)
            except BaseException as exc:  # noqa: BLE001 - one bad frame must never end the worker
                self._on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self.handled += 1
                    self._cond.notify_all()


class LatestFrameWorker(_WorkerThread, Generic[T]):
    """One worker thread fed through a single slot; ``submit`` replaces a waiting item (counted in ``dropped``)."""

    def __init__(self, handle: Callable[[T], None], on_error: Callable[[BaseException], None], name: str = "worker"):
        super().__init__(handle, on_error, name)
        self._item: T | None = None
        self._pending = False
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Hand over the newest item; returns True when it replaced an older item that had not started."""
        with self._cond:
            replaced = self._pending
            if replaced:
                self.dropped += 1
            self._item, self._pending = item, True
            self.submitted += 1
            self._cond.notify()
        return replaced

    def _has_work(self) -> bool:
        return self._pending

    def _take(self) -> tuple:
        item, self._item, self._pending = self._item, None, False
        return (item,)

    def _discard(self) -> None:
        self._item, self._pending = None, False


class RateLimiter:
    """At most ``max_rate`` accepted events per second (0 = no limit): ``accept(t)`` is False for an event less
    than 1/max_rate after the last accepted one."""

    def __init__(self, max_rate: float = 0.0):
        self.max_rate = float(max_rate)
        self._last = -float("inf")

    def accept(self, t: float) -> bool:
        if self.max_rate > 0 and t - self._last < 1.0 / self.max_rate:
            return False
        self._last = t
        return True


class RateWindow:
    """Frames per second and bitrate over the last ``window_s`` seconds of (time, bytes) samples."""

    def __init__(self, window_s: float = 2.0):
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, t: float, num_bytes: int) -> None:
        self._samples.append((float(t), int(num_bytes)))
        while self._samples and self._samples[0][0] < t - self.window_s:
            self._samples.popleft()

    def fps(self) -> float:
        """Frames per second between the first and the last sample in the window (0 with fewer than 2)."""
        if len(self._samples) < 2:
            return 0.0
        span = self._samples[-1][0] - self._samples[0][0]
        return (len(self._samples) - 1) / span if span > 0 else 0.0

    def bitrate_kbps(self) -> float:
        """kbit/s of the samples after the first, over the same span as ``fps``."""
        if len(self._samples) < 2:
            return 0.0
        span = self._samples[-1][0] - self._samples[0][0]
        bits = 8 * sum(n for _, n in list(self._samples)[1:])
        return bits / span / 1000.0 if span > 0 else 0.0


class StreamWorker(_WorkerThread, Generic[T]):
    """One worker thread fed in order, for streams whose frames may depend on earlier ones (decoder side).

    Frames are handled in arrival order; a newly submitted *keyframe* drops every frame still waiting (counted in
    ``dropped``): it decodes without them, so a decoder slower than the stream catches up at the next keyframe
    and its latency stays bounded.  For intra-only streams (every frame a keyframe) this is latest-frame-wins.
    More than ``max_pending`` waiting frames also drops them all, and the next frame handled is flagged
    ``broken`` (an inter frame after it lacks its reference).  ``handle`` gets ``(item, broken)``.
    """

    def __init__(self, handle: Callable[[T, bool], None], on_error: Callable[[BaseException], None],
                 name: str = "stream-worker", max_pending: int = 30):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        super().__init__(handle, on_error, name)
        self.max_pending = int(max_pending)
        self._queue: collections.deque[T] = collections.deque()
        self._broken = False
        self._thread.start()

    def submit(self, item: T, keyframe: bool) -> int:
        """Queue ``item``; returns how many waiting frames it dropped."""
        with self._cond:
            dropped = 0
            if keyframe and self._queue:
                dropped = len(self._queue)
                self._queue.clear()
            elif len(self._queue) >= self.max_pending:
                dropped = len(self._queue)
                self._queue.clear()
                self._broken = True
            if keyframe:
                self._broken = False  # whatever was dropped, this frame needs none of it
            self.dropped += dropped
            self._queue.append(item)
            self.submitted += 1
            self._cond.notify()
        return dropped

    def _has_work(self) -> bool:
        return bool(self._queue)

    def _take(self) -> tuple:
        item, broken = self._queue.popleft(), self._broken
        self._broken = False
        return item, broken

    def _discard(self) -> None:
        self._queue.clear()
