"""Progress lines for downstream fine-tuning: an evaluation stage runs for minutes, so it says where it is.

Plain lines on stderr (two side-by-side runs write to one terminal, where bars would garble each
other), at every quarter of a run's updates: which run (pretrained or random init), the update, the
mean training loss since the last line, and the seconds so far. `run_label` names the run: the
comparison sets it around each evaluation, in whichever process runs it.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from typing import Iterator, TextIO

_RUN = contextvars.ContextVar("d2v_eval_run", default="")
REPORTS_PER_RUN = 4


@contextlib.contextmanager
def run_label(label: str) -> Iterator[None]:
    """Name the evaluation run (e.g. "pretrained") for every progress line written inside."""
    token = _RUN.set(label)
    try:
        yield
    finally:
        _RUN.reset(token)


class UpdateLog:
    """Counts the updates of one fine-tuning run and prints a line at each quarter of `total`."""

    def __init__(self, where: str, total: int, stream: TextIO | None = None) -> None:
        self.where = where
        self.total = total
        self.stream = stream
        self.run = _RUN.get()
        self.start = time.perf_counter()
        self.done = 0
        self.loss_sum = 0.0
        self.loss_count = 0
        self.marks = {max(1, round(total * q / REPORTS_PER_RUN)) for q in range(1, REPORTS_PER_RUN + 1)}

    def update(self, loss: float) -> None:
        self.done += 1
        self.loss_sum += loss
        self.loss_count += 1
        if self.done in self.marks:
            self.write(f"update {self.done}/{self.total} loss {self.loss_sum / self.loss_count:.4g}")
            self.loss_sum, self.loss_count = 0.0, 0

    def write(self, text: str) -> None:
        who = f"{self.where} ({self.run})" if self.run else self.where
        elapsed = time.perf_counter() - self.start
        print(f"[evaluate] {who}: {text} ({elapsed:.0f} s)", file=self.stream or sys.stderr, flush=True)
