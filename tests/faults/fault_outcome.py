"""What one injected fault did, in the terms of the fault table (docs/security.md).

Every scenario module in tests/faults/ (`fault_scenarios_*.py`) exposes `SCENARIOS`: name -> a
function that takes an empty working directory, injects its fault into a real run of d2v (a real
process, a real HTTP endpoint), re-runs what the fault interrupted, and returns a FaultOutcome holding
what it *measured*. The tests assert on those facts; benchmarks/bench_faults.py prints them as a table.
A scenario never decides its own verdict: it reports observations, and `FaultOutcome.survived` is the
one rule applied to all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FaultOutcome:
    fault: str  # what was injected, and where: "S3 answers 503 to every 2nd upload, mid-publish"
    target: str  # the command it hit: publish | pretrain | evaluate | prepare | validate | promote | download
    outcome: str  # what the command did, in a few words: "retried 4 requests, published"
    partial_visible: bool  # could a reader see a half-written run, checkpoint, or output?
    published_changed: bool  # did anything already published (run objects, pointers) change?
    rerun_completed: bool  # did the re-run (or the command itself, if it survived) finish?
    equals_undisturbed: bool  # is the result byte/metric-identical to a run without the fault?
    data_lost: str  # "none", or what was lost
    seconds: float  # wall time of the whole scenario (fault + re-run)

    @property
    def survived(self) -> bool:
        return (not self.partial_visible and not self.published_changed and self.rerun_completed
                and self.equals_undisturbed and self.data_lost == "none")


Scenario = Callable[[Path], FaultOutcome]

__all__ = ["FaultOutcome", "Scenario"]
