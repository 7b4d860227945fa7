"""`d2v profile list|show|apply`: the paper-scale run profiles of `profiles/` (docs/profiles.md)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from d2v.layout import PARAMS_FILE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="list, show or apply a paper-scale run profile (profiles/*.yaml)",
        description="A profile holds the released data2vec recipe of one paper-scale run (model, data, "
        "pretraining and evaluation). `apply` writes it into params.yaml (checked first, comments kept); "
        "then `dvc exp run` or `dvc repro` runs it.",
    )
    parser.add_argument("action", choices=["list", "show", "apply"])
    parser.add_argument("name", nargs="?", help="profile name (profiles/<name>.yaml) or the path of a profile file")
    parser.add_argument("--params", default=str(PARAMS_FILE), help="path to params.yaml")
    parser.add_argument("--profiles-dir", default=None, help="where profiles live (default: profiles/ beside params.yaml)")
    parser.add_argument(
        "--gpus", type=int, default=None,
        help="GPUs (processes) you will run on; grad_accum is scaled so the effective batch stays the "
        "released one (default: the released world size)",
    )  # fmt: skip
    parser.add_argument("--cost", action="store_true", help="show: count the pretraining FLOPs and estimate GPU-hours")
    parser.add_argument("--mfu", type=float, default=None, help="show --cost: assumed model-FLOPs utilisation (default 0.4)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from d2v.errors import ConfigError
    from d2v.profiles.catalog import find_profile, list_profiles, profiles_dir

    directory = Path(args.profiles_dir) if args.profiles_dir else profiles_dir(args.params)
    if args.action == "list":
        _print_list(list_profiles(directory), args.json)
        return 0
    if not args.name:
        raise ConfigError(f"d2v profile {args.action}: name a profile (`d2v profile list` shows them)")
    profile = find_profile(args.name, directory)
    from d2v.profiles.apply import apply_profile, plan_profile

    if args.action == "apply":
        plan = apply_profile(profile, args.params, args.gpus)
        print(f"{args.params}: profile {profile.name} applied on {plan.gpus} GPU(s), {len(plan.changes)} keys changed")
        for change in plan.changes:
            print(f"  {change.key}: {_short(change.old)} -> {_short(change.new)}")
        print(f"next: dvc exp run -n {profile.name}   (or: dvc repro; D2V_NPROC_PER_NODE={plan.gpus} on one node)")
        return 0
    plan = plan_profile(profile, args.params, args.gpus)
    cost = _cost(plan, args) if args.cost else None
    if args.json:
        from d2v.profiles.catalog import as_dict

        payload: dict[str, Any] = {**as_dict(profile), "gpus": plan.gpus}
        payload["changes"] = [{"key": c.key, "old": c.old, "new": c.new} for c in plan.changes]
        if cost is not None:
            payload["cost"] = cost
        print(json.dumps(payload, indent=2))
        return 0
    _print_show(plan, cost)
    return 0


def _cost(plan: Any, args: argparse.Namespace) -> dict[str, float]:
    from d2v.profiles.cost import DEFAULT_MFU, H100_BF16_DENSE_TFLOPS, pretraining_cost

    cost = pretraining_cost(plan.params, plan.profile.modality, plan.gpus)
    mfu = args.mfu if args.mfu is not None else DEFAULT_MFU
    return {
        "gflop_per_sample": round(cost.flop_per_sample / 1e9, 1),
        "samples_per_update": cost.samples_per_update,
        "updates": cost.updates,
        "total_eflop": round(cost.total_flop / 1e18, 1),
        "assumed_mfu": mfu,
        "peak_tflops_bf16": H100_BF16_DENSE_TFLOPS,
        "h100_gpu_hours": round(cost.gpu_hours(mfu), 1),
        "wall_hours": round(cost.wall_hours(mfu), 1),
    }


def _print_list(profiles: list[Any], as_json: bool) -> None:
    if as_json:
        from d2v.profiles.catalog import as_dict

        print(json.dumps([as_dict(p) for p in profiles], indent=2))
        return
    width = max((len(p.name) for p in profiles), default=4)
    print(f"{'name':<{width}}  modality  GPUs  summary")
    for p in profiles:
        print(f"{p.name:<{width}}  {p.modality:<8}  {p.reference_gpus:>4}  {p.summary}")


def _print_show(plan: Any, cost: dict[str, float] | None) -> None:
    profile = plan.profile
    print(f"{profile.name}: {profile.summary}")
    print(f"  file: {profile.path}")
    print(f"  GPUs: {plan.gpus} (released run: {profile.reference_gpus})")
    for what, source in profile.sources.items():
        print(f"  source ({what}): {source}")
    print(f"  changes to params.yaml ({len(plan.changes)}):")
    for change in plan.changes:
        print(f"    {change.key}: {_short(change.old)} -> {_short(change.new)}")
    print("  where d2v departs from the released run:")
    for deviation in profile.deviations:
        print(f"    - {deviation}")
    if cost is not None:
        print(
            f"  cost: {cost['gflop_per_sample']} GFLOP per sample (counted) x {cost['samples_per_update']} samples "
            f"x {cost['updates']} updates = {cost['total_eflop']} EFLOP; at an assumed {cost['assumed_mfu']:.0%} MFU "
            f"of an H100's {cost['peak_tflops_bf16']:.0f} TFLOP/s bf16: {cost['h100_gpu_hours']} GPU-hours, "
            f"{cost['wall_hours']} h on {plan.gpus} GPU(s) (an estimate; benchmarks/gpu_check.sh measures MFU)"
        )


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 70 else text[:67] + "..."
