"""Process faults (fault_scenarios_process.py): SIGKILL mid pretraining, mid checkpoint write, mid
publish, mid evaluation and mid data stage, and a full disk under a checkpoint; each re-run after.

Every scenario runs once per session (its outcome is shared by the tests below). The first test per
scenario checks that the fault really struck (SIGKILL: exit status -9 at the chosen point; full disk:
EFBIG reported, not a death by SIGXFSZ), then each guarantee on its own, so a failure names it.
Guarantees d2v breaks today go in KNOWN_BUGS (empty since the checkpoint fixes): test_process_fault
skips those checks, so add an entry only with a strict-xfail test that shows the breakage.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import pytest

from fault_outcome import FaultOutcome
from fault_scenarios_process import LAST, PREPARE_SHARDS, RUN_FILES, SCENARIOS
from process_project import EVERY, STEPS

# scenario -> guarantee -> why d2v breaks it today
# (none at present: the checkpoint's leftover temporaries and its failed writes' errors are fixed)
KNOWN_BUGS: dict[str, dict[str, str]] = {}

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="drives processes through /proc and prlimit(2)")

_RUNS: dict[str, tuple[FaultOutcome, dict[str, Any]] | BaseException] = {}


def _run(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[FaultOutcome, dict[str, Any]]:
    """The scenario's outcome and details, from its one run this session (a crash is kept too)."""
    if name not in _RUNS:
        try:
            outcome = SCENARIOS[name](tmp_path_factory.mktemp(name))
            _RUNS[name] = (outcome, dict(LAST[name]))
        except Exception as exc:  # noqa: BLE001 - re-raised by every test of this scenario
            _RUNS[name] = exc
    found = _RUNS[name]
    if isinstance(found, BaseException):
        raise found
    return found


def _assert_fault_struck(name: str, details: dict[str, Any]) -> None:
    if name.startswith("full-disk"):
        assert details["ignores_sigxfsz"], "the trainer would die of SIGXFSZ instead of seeing EFBIG"
        assert details["efbig_seen"], f"no EFBIG in the trainer's output: {details['victim_tail']}"
        assert details["victim_rc"] not in (0, -signal.SIGXFSZ), details["victim_tail"]
        assert details["checkpoint_step_before"] == EVERY
        assert details["resumed_from"] == EVERY, "the re-run did not resume from the intact checkpoint"
        return
    assert details["victim_rc"] == -signal.SIGKILL, f"the victim was not SIGKILLed: {details.get('victim_tail')}"
    assert details.get("kill_state") or details.get("killed_after_steps"), "no kill point was reached"
    if name == "sigkill-mid-pretraining":
        assert 0 < details["killed_after_steps"] < STEPS
        assert details["resumed_from"] == (details["checkpoint_step_at_kill"] or 0)
    elif name == "sigkill-mid-checkpoint-write":
        assert details["kill_state"]["tmp"] in details["temporaries_after_kill"]  # killed inside the write
        assert details["resumed_from"] == (details["checkpoint_step_at_kill"] or 0)
    elif name == "sigkill-mid-publish":
        # Inside the upload: some bytes, at most all of them (the manifest, written last, never came).
        assert 0 < details["kill_state"]["bytes"] <= sum(RUN_FILES.values())
        assert details["rerun_rc"] == 0
    elif name == "sigkill-mid-prepare":
        assert 0 < details["kill_state"]["shards"] <= PREPARE_SHARDS
        assert details["output_after_kill"] in ("absent", "previous", "complete")
    elif name == "sigkill-mid-evaluate":
        assert details["kill_state"]["workers"], "killed before the evaluation started any work"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_process_fault(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    outcome, details = _run(name, tmp_path_factory)
    _assert_fault_struck(name, details)
    known = KNOWN_BUGS.get(name, {})
    about = f"{name}: {outcome.fault} -> {outcome.outcome}"
    if "partial_visible" not in known:
        assert not outcome.partial_visible, f"a reader could see a half-written product. {about}; {details}"
    assert not outcome.published_changed, f"something complete before the fault changed. {about}; {details}"
    assert outcome.rerun_completed, f"the re-run failed. {about}; {details.get('rerun_tail')}"
    assert outcome.equals_undisturbed, f"the re-run's result differs from an undisturbed run's. {about}"
    assert outcome.data_lost == "none", f"data lost: {outcome.data_lost}. {about}"
    if name.startswith("full-disk") and "error_names_file" not in known:
        assert details["error_names_file"], f"the error names neither the file nor the cause: {details['error_line']!r}"
    assert outcome.target in ("pretrain", "publish", "evaluate", "prepare") and outcome.seconds > 0


# guarantee -> whether it held, from the outcome and the scenario's details
HOLDS = {
    "partial_visible": lambda outcome, details: not outcome.partial_visible,
    "published_changed": lambda outcome, details: not outcome.published_changed,
    "rerun_completed": lambda outcome, details: outcome.rerun_completed,
    "equals_undisturbed": lambda outcome, details: outcome.equals_undisturbed,
    "data_lost": lambda outcome, details: outcome.data_lost == "none",
    "error_names_file": lambda outcome, details: bool(details["error_names_file"]),
}


def test_known_bugs_name_real_scenarios_and_guarantees() -> None:
    for name, broken in KNOWN_BUGS.items():
        assert name in SCENARIOS and set(broken) <= set(HOLDS), (name, broken)
    assert set(HOLDS) - {"error_names_file"} <= set(FaultOutcome.__dataclass_fields__)
