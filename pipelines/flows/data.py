"""`data` flow: the DVC data stages, one `dvc repro` task per stage (each retried on failure).

`dvc repro` of a stage also brings everything upstream of it up to date, so listing only the last
stage (`validate`) is enough; listing every stage gives one retried task per step instead.
Refreshing (`refresh`) forces the download stages to fetch their sources again: a source whose
content changed yields new output hashes, i.e. a new data version in dvc.lock, and everything
downstream re-runs; an unchanged source leaves the downstream stages cached.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from d2v.layout import MODALITIES, PARAMS_FILE, Layout
from pipelines.dvc_stages import available_stages, expand_stages, prepared_data_versions
from pipelines.flows.dvc_tasks import dvc_repro
from pipelines.flows.logs import run_logger

DATA_STAGES = ["download", "prepare", "tokenize", "validate"]
REFRESH_STAGES = ["download"]


@flow(name="data", log_prints=True)
def data_flow(
    root: str = ".",
    modalities: list[str] = list(MODALITIES),
    stages: list[str] = DATA_STAGES,
    refresh: bool = False,
    refresh_stages: list[str] = REFRESH_STAGES,
) -> dict[str, str]:
    """Bring the data stages up to date; returns the prepared-data version (md5) per modality."""
    logger = run_logger()
    available = available_stages(Path(root))
    if refresh:
        # --single-item: re-fetch the sources only; the repro below decides what else must re-run.
        dvc_repro(root, expand_stages(refresh_stages, modalities, available), force=True, single_item=True)
    for target in expand_stages(stages, modalities, available):
        dvc_repro(root, [target])
    versions = prepared_data_versions(Path(root), Layout.from_params(Path(root) / PARAMS_FILE), modalities)
    logger.info("prepared data versions: %s", versions)
    return versions
