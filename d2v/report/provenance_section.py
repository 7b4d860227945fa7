"""The report's provenance section: git, hardware, seeds, package versions, dvc.lock hashes, params."""

from __future__ import annotations

import yaml

from d2v.config import Params, to_mapping
from d2v.report.document import Block, Code, Paragraph, Section, Subheading, Table
from d2v.report.provenance import RunProvenance
from d2v.report.sections import ReportContext, fmt


def _git_words(prov: RunProvenance) -> tuple[tuple[str, str], ...]:
    dirty = {True: "yes (uncommitted changes to tracked files)", False: "no", None: "unknown"}[prov.git_dirty]
    return (("git commit", prov.git_commit or "not a git checkout"), ("working tree dirty", dirty))


def _hardware_rows(prov: RunProvenance, ctx: ReportContext) -> tuple[tuple[str, str], ...]:
    hw = prov.hardware
    rows = [
        ("CPU", hw.cpu_model),
        ("logical cores", str(hw.logical_cores)),
        # Under a limit d2v runs fewer threads (d2v/cpu_limit.py), which changes the last bits.
        ("CPU limit (cgroup)", "none" if hw.cpu_limit_cores is None else f"{hw.cpu_limit_cores:g} cores"),
        ("memory (GiB)", fmt(hw.memory_gib, 1)),
        ("GPUs", ", ".join(hw.gpus) if hw.gpus else "none detected"),
    ]
    for m in ctx.modalities:  # where training ran may differ from where the report is built
        if m.pretrain is not None:
            s = m.pretrain.summary
            rows.append((f"pretrain@{m.modality} device", f"{fmt(s.get('device'))} × {fmt(s.get('world_size'))}"))
    return tuple(rows)


def _lock_rows(prov: RunProvenance) -> tuple[tuple[str, ...], ...]:
    return tuple((o.stage, o.path, o.md5, fmt(o.size), fmt(o.nfiles)) for o in prov.locked_outputs)


def params_yaml(params: Params) -> str:
    return yaml.safe_dump(to_mapping(params), sort_keys=False, default_flow_style=None, width=100)


def provenance_section(ctx: ReportContext, prov: RunProvenance, params_path: str) -> Section:
    blocks: list[Block] = [
        Table(("item", "value"), _git_words(prov) + (("params file", params_path),)),
        Subheading("Hardware (the machine that built this report; the pretraining devices below)"),
        Table(("item", "value"), _hardware_rows(prov, ctx)),
        Subheading("Seeds"),
        Table(("params key", "seed"), tuple((k, str(v)) for k, v in prov.seeds.items())),
        Subheading("Package versions"),
        Table(("package", "version"), tuple((k, v or "not installed") for k, v in prov.versions.items())),
        Subheading("Data and model hashes (dvc.lock outputs)"),
    ]
    if prov.locked_outputs:
        blocks.append(Table(("stage", "path", "md5", "bytes", "files"), _lock_rows(prov)))
    else:
        blocks.append(Paragraph("No dvc.lock: the pipeline has not been run with `dvc repro` here."))
    blocks += [
        Subheading("Parameters"),
        Code(params_yaml(ctx.params), summary=f"params.yaml as loaded ({params_path})"),
    ]
    return Section("Provenance", tuple(blocks))
