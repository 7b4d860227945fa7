"""Run the pretrained and the random-init evaluation at the same time, in two forked processes.

The tiny models of the embedded default keep two CPU cores only partly busy: one fine-tuning
process on 2 threads runs a text update in 0.098 s, two processes on 1 thread each run one update
each in 0.13 s (measured here), so the pair finishes sooner side by side (1.2-1.4x,
`benchmarks/bench_side_by_side.py`). Each child runs its job on one intra-op thread under the seed
given and sends the result back pickled; the parent's own state (the global RNG included) is
untouched.

One thread per child, and only where the parent has no more threads than there are jobs
(`worth_running_side_by_side`): a forked child cannot run an OpenMP parallel region once the parent
has used its thread pool (libgomp's pool does not survive fork; measured here, a 2-thread matmul in
such a child hangs), and on a machine with more cores one run on all of them is the better use.

Fork, not spawn: the jobs close over datasets, sentencepiece processors and models that need not
pickle; only their results travel. A child that fails sends its exception back, and the parent
re-raises it after stopping the other child, so an error reads as it would in a single process.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import sys
import traceback
from multiprocessing.connection import Connection, wait
from typing import Callable, Sequence, TypeVar

import torch

from d2v.errors import D2VError

T = TypeVar("T")


class SideBySideError(D2VError):
    """A job failed in its child process with an exception that could not be sent back as it was."""


def worth_running_side_by_side(jobs: int, available: int | None = None) -> bool:
    """True when `available` intra-op threads (default: this process's) are no more than `jobs`:
    then one single-threaded process per job uses the machine better than one run at a time."""
    available = torch.get_num_threads() if available is None else available
    return jobs > 1 and available <= jobs


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int | None) -> None:
    """On Linux, have the kernel SIGKILL this forked child when its parent dies (a SIGKILLed
    `d2v evaluate` runs no cleanup, and its daemon children would otherwise run on, orphaned). Then
    check the parent is still the one that forked us: if it died before prctl took effect, exit now.
    Elsewhere a no-op (the parent's cleanup still terminates its children when it can run)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl: nothing to arm
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)  # the parent is already gone (reparented to init or a subreaper)


def _child(job: Callable[[], T], seed: int, sender: Connection, parent: int | None = None) -> None:
    _die_with_parent(parent)
    torch.set_num_threads(1)  # never an OpenMP parallel region in a forked child (module docstring)
    torch.manual_seed(seed)
    try:
        outcome: tuple[str, object] = ("ok", job())
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent, which re-raises
        outcome = ("error", exc)
    try:
        payload = pickle.dumps(outcome)
    except Exception:  # an unpicklable result or exception still gets reported, as text
        payload = pickle.dumps(("error", SideBySideError("".join(traceback.format_exception(outcome[1]))
                                                         if outcome[0] == "error" else "result could not be pickled")))
    sender.send_bytes(payload)
    sender.close()


def run_side_by_side(jobs: Sequence[Callable[[], T]], seed: int, labels: Sequence[str] | None = None) -> list[T]:
    """Run every job in its own forked, single-threaded process under `seed`; their results, in order.

    The first failure stops the other jobs and is re-raised here. `labels` name the jobs in errors.
    """
    labels = list(labels) if labels is not None else [f"job {i}" for i in range(len(jobs))]
    context = mp.get_context("fork")
    parent = os.getpid()
    receivers: dict[Connection, int] = {}
    processes = []
    for index, job in enumerate(jobs):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(job, seed, sender, parent), daemon=True)
        process.start()
        sender.close()  # the child holds the only writing end: EOF here means it died
        receivers[receiver] = index
        processes.append(process)
    results: list[object] = [None] * len(jobs)
    try:
        pending = dict(receivers)
        while pending:
            for receiver in wait(list(pending)):
                index = pending.pop(receiver)  # type: ignore[arg-type]
                try:
                    status, value = pickle.loads(receiver.recv_bytes())
                except EOFError:
                    processes[index].join()
                    code = processes[index].exitcode
                    raise SideBySideError(f"{labels[index]}: its process died without a result (exit code {code})") from None
                if status == "error":
                    raise value  # type: ignore[misc]
                results[index] = value
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
    return results  # type: ignore[return-value]
