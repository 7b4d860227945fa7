"""Progress of long work: a tqdm bar on a terminal, plain log lines otherwise.

One rule decides (`wants_bar`): no bar in CI (CI=1/true/yes), with TQDM_DISABLE set (to anything but
0), or when the stream is not a terminal (log files, pipes, DVC and Prefect captures). `Progress`
applies it to any counted work; three callers shape their lines on top of it:

- pretraining: `Progress("pretrain image", max_steps, every=log_every)` and
  `update(step, {"loss": ...})`: a bar with the latest values, or "[pretrain image] step 20/200
  loss=0.93 ..." every `log_every` steps and at the last.
- fine-tuning: `UpdateLog(where, total)`: always plain lines, at each quarter of a run's updates
  ("[evaluate] text task sentiment (random init): update 284/378 loss 0.412 (31 s)"): two runs side
  by side share one terminal, where two bars would garble each other.
- artifact transfers: `TransferLog()`: one line per file ("upload ckpt/model.pt (4.0 KiB)"), and a
  byte bar while a large file moves.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, TextIO

from tqdm import tqdm


def wants_bar(stream: TextIO | None = None) -> bool:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    if os.environ.get("TQDM_DISABLE", "") not in ("", "0"):
        return False
    return (stream if stream is not None else sys.stderr).isatty()


class Progress:
    """`done` of `total` units: a tqdm bar when `bar` is allowed and wanted, plain lines otherwise.

    Plain lines come from `update` at the counts `every` (multiples, and the last) and `marks` name.
    `enabled=False` silences everything (ranks other than 0). The stream defaults to the sys.stderr
    of the moment of each write, so captured or redirected stderr keeps working.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        initial: int = 0,
        every: int = 0,
        marks: Iterable[int] = (),
        enabled: bool = True,
        bar: bool = True,
        stream: TextIO | None = None,
        unit: str = "it",
        transient: bool = False,
    ) -> None:
        self.label = label
        self.total = total
        self.done = initial
        self.every = every
        self.marks = frozenset(marks)
        self.enabled = enabled
        self.stream = stream
        self.start = time.perf_counter()
        self.bar: tqdm | None = None
        if enabled and bar and wants_bar(stream):
            # disable=False: wants_bar has decided; tqdm would otherwise apply TQDM_DISABLE as read when
            # tqdm was first imported, not as it is now.
            self.bar = tqdm(total=total, initial=initial, desc=label, dynamic_ncols=True, file=stream, disable=False,
                            unit=unit, unit_scale=unit == "B", unit_divisor=1024, leave=not transient)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def line_due(self, done: int) -> bool:
        """Whether plain-line mode writes a line at count `done`."""
        if self.bar is not None:
            return False
        at_every = self.every > 0 and (done % self.every == 0 or done == self.total)
        return at_every or done in self.marks

    def write(self, text: str) -> None:
        """One line as given, above the bar when there is one."""
        if not self.enabled:
            return
        stream = self.stream if self.stream is not None else sys.stderr
        if self.bar is not None:
            self.bar.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def message(self, text: str) -> None:
        self.write(f"[{self.label}] {text}")

    def advance(self, n: int = 1) -> None:
        """Count `n` more units (bytes, for a transfer); plain-line mode only keeps the count."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def update(self, done: int, values: Mapping[str, Any]) -> None:
        """`done` units so far and the latest values: the bar's postfix, or a "step" line when due."""
        if not self.enabled:
            return
        shown = {k: f"{float(v):.4g}" for k, v in values.items()}
        step, self.done = done - self.done, done
        if self.bar is not None:
            self.bar.update(step)
            self.bar.set_postfix(shown, refresh=False)
        elif self.line_due(done):
            fields = " ".join(f"{k}={v}" for k, v in shown.items())
            self.message(f"step {done}/{self.total} {fields}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ------------------------------------------------------------------------------------ fine-tuning

_RUN = contextvars.ContextVar("d2v_eval_run", default="")
REPORTS_PER_RUN = 4


@contextlib.contextmanager
def run_label(label: str) -> Iterator[None]:
    """Name the evaluation run (e.g. "pretrained") for every UpdateLog line written inside."""
    token = _RUN.set(label)
    try:
        yield
    finally:
        _RUN.reset(token)


class UpdateLog:
    """Counts one fine-tuning run's updates; at each quarter of `total`, a line with the mean training
    loss since the previous line and the seconds so far. The comparison sets `run_label` around each
    run, in whichever process runs it."""

    def __init__(self, where: str, total: int, stream: TextIO | None = None) -> None:
        self.where = where
        self.run = _RUN.get()
        quarters = {max(1, round(total * q / REPORTS_PER_RUN)) for q in range(1, REPORTS_PER_RUN + 1)}
        self.progress = Progress("evaluate", total, marks=quarters, bar=False, stream=stream)
        self.loss_sum = 0.0
        self.loss_count = 0

    def update(self, loss: float) -> None:
        self.progress.advance()
        self.loss_sum += loss
        self.loss_count += 1
        done = self.progress.done
        if self.progress.line_due(done):
            self.write(f"update {done}/{self.progress.total} loss {self.loss_sum / self.loss_count:.4g}")
            self.loss_sum, self.loss_count = 0.0, 0

    def write(self, text: str) -> None:
        who = f"{self.where} ({self.run})" if self.run else self.where
        self.progress.message(f"{who}: {text} ({self.progress.elapsed:.0f} s)")


# ------------------------------------------------------------------------------ artifact transfers

LARGE_FILE_BYTES = 8 * 1024 * 1024


class TransferLog:
    """d2v.artifacts' TransferProgress on a console: one line per file, and a byte bar (cleared when
    done) while a file of at least `large_bytes` moves, when a bar is wanted."""

    def __init__(self, stream: TextIO | None = None, large_bytes: int = LARGE_FILE_BYTES) -> None:
        self.stream = stream
        self.large_bytes = large_bytes
        self._file: Progress | None = None

    def file_started(self, action: str, path: str, size: int) -> Callable[[int], None] | None:
        self._file = Progress(f"{action} {path}", size, bar=size >= self.large_bytes, stream=self.stream,
                              unit="B", transient=True)
        return self._file.advance if self._file.bar is not None else None

    def file_done(self, action: str, path: str, size: int) -> None:
        progress = self._file or Progress(f"{action} {path}", size, bar=False, stream=self.stream)
        self._file = None
        progress.close()  # the bar goes first: the line stays
        progress.write(f"{action} {path} ({human_size(size)})")


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["LARGE_FILE_BYTES", "Progress", "TransferLog", "UpdateLog", "human_size", "run_label", "wants_bar"]
