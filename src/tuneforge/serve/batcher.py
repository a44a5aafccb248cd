"""Concurrent requests -> batched `generate` calls, one at a time, in one worker thread.

Requests wait in a FIFO queue. Whenever the model is free, the worker takes the oldest request plus every
waiting request with the same generation settings (sampling arguments, stop strings, presence penalty)
and answers them in one left-padded `engine.generate_batch` call; a request for n answers is n rows.
Requests with other settings wait for a later round, in arrival order. The API bounds how many requests
are admitted at once (MAX_CONCURRENT), which bounds the queue and the batch.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..data.media.base import RowMedia

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One request: `n` answers to one prompt. `future` resolves to its n Responses."""

    prompt_ids: list[int]
    n: int = 1
    media: RowMedia | None = None  # the prompt's images / videos / audios
    overrides: dict[str, Any] = field(default_factory=dict)  # generation arguments (None: the config's)
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    on_piece: Callable[[int, str], None] | None = None  # (answer index, text), from the worker thread
    cancelled: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)

    def batch_key(self) -> tuple:
        settings = tuple(sorted((key, value) for key, value in self.overrides.items() if value is not None))
        return settings, self.stop, self.presence_penalty, bool(self.media)


class Batcher:
    def __init__(self, engine: Any, max_batch_rows: int = 8):
        self.engine = engine
        self.max_batch_rows = max_batch_rows
        self.batch_sizes: list[int] = []  # requests per generate call, for tests and logs
        self.submitted = 0  # requests received so far
        self._queue: queue.Queue = queue.Queue()
        self._pending: deque[Job] = deque()
        self._thread = threading.Thread(target=self._work, name="tuneforge-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future:
        self.submitted += 1  # only the event loop's thread submits
        self._queue.put(job)
        return job.future

    def waiting(self) -> int:
        """Requests not yet taken into a batch."""
        return self._queue.qsize() + len(self._pending)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            first = self._pending.popleft() if self._pending else self._queue.get()
            if first is None:
                return
            while True:  # everything that arrived meanwhile joins the pending line
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # close after this batch
                    break
                self._pending.append(job)
            self._run(self._take_batch(first))

    def _take_batch(self, first: Job) -> list[Job]:
        batch, rows, key = [first], first.n, first.batch_key()
        for job in list(self._pending):
            if job.batch_key() == key and rows + job.n <= self.max_batch_rows:
                batch.append(job)
                rows += job.n
                self._pending.remove(job)
        return batch

    def _run(self, batch: list[Job]) -> None:
        for job in batch:
            if job.cancelled.is_set():  # the client left while it waited
                job.future.cancel()
        # From here on a future cannot be cancelled (a client that leaves sets job.cancelled instead), so
        # setting its result below cannot fail.
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        owners = [(job, index) for job in batch for index in range(job.n)]
        first = batch[0]

        def on_piece(row: int, text: str) -> None:
            job, index = owners[row]
            if job.on_piece is not None:
                job.on_piece(index, text)

        self.batch_sizes.append(len(batch))
        try:
            responses = self.engine.generate_batch(
                [job.prompt_ids for job, _ in owners], media=[job.media for job, _ in owners],
                stop=first.stop, presence_penalty=first.presence_penalty, on_piece=on_piece,
                cancelled=lambda row: owners[row][0].cancelled.is_set(), **first.overrides)
        except BaseException as error:  # noqa: BLE001 - handed to every waiting request
            if not _is_user_error(error):
                logger.exception("generation failed")
            for job in batch:
                job.future.set_exception(error)
            return
        start = 0
        for job in batch:
            job.future.set_result(responses[start:start + job.n])
            start += job.n


def _is_user_error(error: BaseException) -> bool:
    from ..errors import UserError

    return isinstance(error, UserError)
