"""The fault table: d2v under injected faults (flaky S3, lost responses, corrupted objects, racing
promotions, SIGKILL, a full disk), each scenario in a fresh temporary directory.

Runs the scenarios of tests/faults/fault_scenarios_store.py (S3 through a fault proxy in front of a
moto server, and file://) and tests/faults/fault_scenarios_process.py (real `d2v` subprocesses killed
or starved of disk), the same functions `pytest tests/faults` asserts on. Each row is what the
scenario measured (tests/faults/fault_outcome.py); "survived" is FaultOutcome.survived: no partial
result visible, nothing already published changed, the re-run completed, its result equals an
undisturbed run's, no data lost. Scenarios d2v does not survive yet (the store's KNOWN_FAILING, the
process suite's KNOWN_BUGS) run too and show as KNOWN BUG. Also measures this machine's fp32 matmul
peak, for context. Prints a table and writes benchmarks/results/faults.json.

    python benchmarks/bench_faults.py [--only SUBSTRING] [--list] [--out X.json]

With --only, the JSON is written only where --out names it (a partial table never replaces the full one).

Exits 1 if a scenario that is not a known bug did not survive (or raised). Takes about 2-3 minutes
on 2 CPU cores; Linux only (the process scenarios use /proc and prlimit(2)).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "faults.json"
for _path in (REPO / "tests" / "faults", REPO / "tests", Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import torch  # noqa: E402

import fault_scenarios_process as process_suite  # noqa: E402  (tests/faults is not a package)
import fault_scenarios_store as store_suite  # noqa: E402
from d2v.atomic import atomic_write_json  # noqa: E402

from bench_train_step import matmul_peak_gflops  # noqa: E402 - a sibling script: the same measurement

# The guarantees FaultOutcome.survived combines: name -> whether it held.
GUARANTEES: dict[str, Callable[[Any], bool]] = {
    "partial_visible": lambda o: not o.partial_visible,
    "published_changed": lambda o: not o.published_changed,
    "rerun_completed": lambda o: o.rerun_completed,
    "equals_undisturbed": lambda o: o.equals_undisturbed,
    "data_lost": lambda o: o.data_lost == "none",
}
COLUMNS = ["fault", "target", "outcome", "partial visible", "published changed", "re-run completed",
           "equals undisturbed", "data lost", "survived", "seconds"]


def _process_known_bugs() -> Mapping[str, Mapping[str, str]]:
    """scenario -> guarantee -> reason; wherever the process suite keeps it (module or test file)."""
    found = getattr(process_suite, "KNOWN_BUGS", None)
    if found is None:
        try:
            from test_process_faults import KNOWN_BUGS as found  # imports pytest, which the tests need anyway
        except ImportError:
            found = {}
    return found


def scenarios() -> list[dict[str, Any]]:
    """Every scenario, in run order: name, suite, function, and what is known to break (if anything)."""
    out: list[dict[str, Any]] = []
    store_reasons = getattr(store_suite, "KNOWN_FAILING_REASONS", {})
    for name, fn in store_suite.SCENARIOS.items():
        out.append({"name": name, "suite": "store", "fn": fn, "known": {}})
    for name, fn in getattr(store_suite, "KNOWN_FAILING", {}).items():
        # The whole scenario is expected to fail: every guarantee excused.
        out.append({"name": name, "suite": "store", "fn": fn,
                    "known": {"*": store_reasons.get(name, "listed in KNOWN_FAILING")}})
    bugs = _process_known_bugs()
    for name, fn in process_suite.SCENARIOS.items():
        out.append({"name": name, "suite": "process", "fn": fn, "known": dict(bugs.get(name, {}))})
    return out


def _struck(name: str, suite: str, details: Mapping[str, Any]) -> bool:
    """Did the fault happen at all? (A scenario where nothing was injected proves nothing.)"""
    if suite == "store":
        return details.get("injected", 1) > 0
    if name.startswith("full-disk"):
        return bool(details.get("efbig_seen"))
    return details.get("victim_rc") == -9


def run_one(entry: dict[str, Any]) -> dict[str, Any]:
    name, suite, known = entry["name"], entry["suite"], entry["known"]
    last = store_suite.LAST if suite == "store" else process_suite.LAST
    row: dict[str, Any] = {"name": name, "suite": suite, "known_bugs": known}
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"d2v-fault-{name}-") as tmp:
        try:
            outcome = entry["fn"](Path(tmp))
        except Exception as exc:  # noqa: BLE001 - a row of the table, not a crash of the benchmark
            row.update(fault=name, target="?", outcome=f"ERROR: {type(exc).__name__}: {exc}".splitlines()[0],
                       partial_visible=None, published_changed=None, rerun_completed=False,
                       equals_undisturbed=False, data_lost="unknown", seconds=round(time.monotonic() - start, 2),
                       survived=False, error=traceback.format_exc(limit=6), details={})
            # An error is excused only where the whole scenario is a known failure.
            row["failed_guarantees"] = ["raised"]
            row["excused"] = "*" in known
            return row
    details = dict(last.get(name, {}))
    failed = [g for g, held in GUARANTEES.items() if not held(outcome)]
    if "error_names_file" in details and not details["error_names_file"]:
        failed.append("error_names_file")  # checked by tests/faults for the full-disk scenarios
    if not _struck(name, suite, details):
        failed.append("fault_struck")
    row.update(fault=outcome.fault, target=outcome.target, outcome=outcome.outcome,
               partial_visible=outcome.partial_visible, published_changed=outcome.published_changed,
               rerun_completed=outcome.rerun_completed, equals_undisturbed=outcome.equals_undisturbed,
               data_lost=outcome.data_lost, seconds=outcome.seconds, survived=outcome.survived,
               failed_guarantees=failed, details=details)
    row["excused"] = "*" in known or (bool(failed) and set(failed) <= set(known))
    # A known bug whose guarantee now holds: fixed, and its KNOWN_* entry should go.
    row["known_but_held"] = sorted(g for g in known if g != "*" and g not in failed) + (
        ["*"] if "*" in known and not failed else [])
    return row


def _yes(value: Any) -> str:
    return "?" if value is None else ("yes" if value else "no")


def survived_cell(row: dict[str, Any]) -> str:
    failed = row["failed_guarantees"]
    if not failed:
        return "yes" + ("; KNOWN BUG fixed?" if row.get("known_bugs") else "")
    if row["excused"]:
        return ("yes" if row["survived"] else "no") + " - KNOWN BUG"
    return "no"


def cells(row: dict[str, Any]) -> list[str]:
    return [row["fault"], row["target"], row["outcome"], _yes(row["partial_visible"]),
            _yes(row["published_changed"]), _yes(row["rerun_completed"]), _yes(row["equals_undisturbed"]),
            row["data_lost"], survived_cell(row), f"{row['seconds']:.1f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", metavar="SUBSTRING", help="run only the scenarios whose name contains it")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--out", type=Path, help=f"the JSON to write (default: {RESULTS.relative_to(REPO)}; "
                        "with --only, none unless given)")
    args = parser.parse_args()
    chosen = [e for e in scenarios() if not args.only or args.only in e["name"]]
    if args.list:
        for e in chosen:
            mark = "  KNOWN BUG: " + "; ".join(f"{g}: {r}" for g, r in e["known"].items()) if e["known"] else ""
            print(f"{e['suite']:8} {e['name']}{mark}")
        return 0
    if not chosen:
        print(f"no scenario matches {args.only!r} (see --list)", file=sys.stderr)
        return 2
    began = time.monotonic()
    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak measured now: {peak:.1f} GFLOP/s ({torch.get_num_threads()} threads)", flush=True)
    rows = []
    for entry in chosen:
        print(f"... {entry['suite']}: {entry['name']}", file=sys.stderr, flush=True)
        rows.append(run_one(entry))
    wall = time.monotonic() - began

    print(" | ".join(["scenario", *COLUMNS]))
    for row in rows:
        print(" | ".join([row["name"], *cells(row)]))
    notes = []
    for row in rows:
        if row["failed_guarantees"] and not row["excused"]:
            notes.append(f"{row['name']}: FAILED {', '.join(row['failed_guarantees'])}")
        for guarantee, reason in row["known_bugs"].items():
            state = "now holds: remove it from KNOWN_*" if guarantee in row.get("known_but_held", []) else "still broken"
            notes.append(f"{row['name']}: KNOWN BUG ({'whole scenario' if guarantee == '*' else guarantee}, {state}): {reason}")
    for note in notes:
        print(f"- {note}")
    print(f"total wall time: {wall:.1f} s")

    failures = [r["name"] for r in rows if r["failed_guarantees"] and not r["excused"]]
    payload = {
        "date": datetime.date.today().isoformat(),
        "matmul_peak_gflops": round(peak, 1),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "only": args.only,
        "wall_time_s": round(wall, 1),
        "failures": failures,
        "rows": [{k: v for k, v in row.items() if k != "fn"} for row in rows],
    }
    out = args.out or (None if args.only else RESULTS)
    if out is not None:  # default=str: a scenario's details may hold paths or other non-JSON values
        atomic_write_json(out, json.loads(json.dumps(payload, default=str)))  # a temporary name, then rename
        print(f"wrote {out}")
    if failures:
        print(f"did not survive (not a known bug): {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
