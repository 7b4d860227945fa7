"""Where every run file lives: the modality names and each stage's paths, defined once.

Paths are relative to the repository root (`Layout.under(root)` prefixes them). The data
directories are params (`data.raw_dir`, `data.interim_dir`, `data.prepared_dir`,
`data.reports_dir`), so a Layout is built from the `data` slice; the rest is fixed here.
dvc.yaml spells the same paths (reading the data directories from params.yaml with `${...}`);
tests/pipelines/test_dvc_contract.py checks that the two agree.

    models/<modality>/checkpoint.pt            pretrain@<modality> (+ checkpoint.<hash>.safetensors: the weights;
                                               DVC tracks the directory, d2v/train/checkpoint.py)
    metrics/pretrain/<modality>/               pretraining log (DVCLive): metrics.json (summary),
                                               plots/metrics/<metric>.tsv (per step)
    metrics/eval/<modality>/metrics.json       evaluate@<modality> headline metrics (DVCLive)
    metrics/eval/<modality>.json               evaluate@<modality> records
    metrics/eval/<modality>_tasks.csv          the records as a table (`dvc plots`)
    metrics/eval/image_confusion.csv           the image probe's confusion matrix
    <data.reports_dir>/<modality>.json         validate@<modality>
    <data.reports_dir>/data_docs/<modality>/   validate@<modality>: the GX Data Docs site (index.html)
    reports/benchmark.{md,html}, reports/benchmark_figures/   report
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from d2v.errors import D2VError

if TYPE_CHECKING:  # d2v/__init__ imports this module: no config imports at run time
    from d2v.data.config import DataConfig

Modality = Literal["image", "speech", "text"]
MODALITIES: tuple[str, ...] = get_args(Modality)  # ("image", "speech", "text"), in report order

MODELS_DIR = Path("models")
METRICS_DIR = Path("metrics")  # the report reads <metrics dir>/pretrain and <metrics dir>/eval
PRETRAIN_METRICS_DIR = METRICS_DIR / "pretrain"
EVAL_METRICS_DIR = METRICS_DIR / "eval"
REPORTS_DIR = Path("reports")
# DVCLive's directory layout (d2v/train/metrics.py, d2v/eval/live.py write it).
LIVE_SUMMARY_NAME = "metrics.json"
LIVE_PLOTS_SUBDIR = Path("plots") / "metrics"
CHECKPOINT_NAME = "checkpoint.pt"
REPORT_MD_NAME = "benchmark.md"
REPORT_HTML_NAME = "benchmark.html"
REPORT_FIGURES_NAME = "benchmark_figures"
PARAMS_FILE = Path("params.yaml")
# Downloads kept across runs: DVC removes a stage's outputs before it runs, so never a DVC output.
DOWNLOAD_CACHE_DIR = Path("data/cache")
DVC_LOCK = Path("dvc.lock")
DATA_DOCS_NAME = "data_docs"  # under the validation reports directory, one GX Data Docs site per modality


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise D2VError(f"modality {modality!r}: expected one of {', '.join(MODALITIES)}")
    return modality


def data_docs_dir(validation_dir: Path, modality: str) -> Path:
    """The GX Data Docs site of `modality` (its index.html) under the validation reports directory."""
    return Path(validation_dir) / DATA_DOCS_NAME / check_modality(modality)


def eval_tasks_name(modality: str) -> str:
    """File name of the evaluate stage's per-task table (in the eval metrics directory)."""
    return f"{check_modality(modality)}_tasks.csv"


def confusion_name(modality: str) -> str:
    """File name of a classification probe's confusion matrix (written for images)."""
    return f"{check_modality(modality)}_confusion.csv"


@dataclass(frozen=True)
class Layout:
    """Every run path; the four data directories come from params.yaml's `data` section."""

    raw_dir: Path
    interim_dir: Path
    prepared_dir: Path
    validation_dir: Path  # params: data.reports_dir
    models_dir: Path = MODELS_DIR
    pretrain_metrics_dir: Path = PRETRAIN_METRICS_DIR
    eval_metrics_dir: Path = EVAL_METRICS_DIR
    reports_dir: Path = REPORTS_DIR
    dvc_lock: Path = DVC_LOCK

    @classmethod
    def from_data(cls, data: DataConfig) -> Layout:
        return cls(raw_dir=Path(data.raw_dir), interim_dir=Path(data.interim_dir),
                   prepared_dir=Path(data.prepared_dir), validation_dir=Path(data.reports_dir))

    @classmethod
    def from_params(cls, params_path: str | Path = PARAMS_FILE) -> Layout:
        """The layout of the params file at `params_path` (relative paths stay relative)."""
        from d2v.config import load_params  # lazily: d2v.config imports every config module

        return cls.from_data(load_params(params_path).data)

    @classmethod
    def of_checkout(cls, root: str | Path) -> Layout:
        """The layout of the repository checkout at `root` (its params.yaml), paths under `root`."""
        return cls.from_params(Path(root) / PARAMS_FILE).under(root)

    def under(self, root: str | Path) -> Layout:
        """The same layout with every directory prefixed by `root` (absolute ones stay as they are)."""
        return dataclasses.replace(self, **{f.name: Path(root) / getattr(self, f.name)
                                            for f in dataclasses.fields(self)})

    # ---- data (download -> prepare -> tokenize -> validate)
    def raw(self, modality: str) -> Path:
        return self.raw_dir / check_modality(modality)

    def interim(self, modality: str) -> Path:
        return self.interim_dir / check_modality(modality)

    def prepared(self, modality: str) -> Path:
        """What pretraining and evaluation read (for text: the tokenize stage's output)."""
        return self.prepared_dir / check_modality(modality)

    def prepare_output(self, modality: str) -> Path:
        """The prepare stage's output: text goes to interim/ first, the tokenize stage finishes it."""
        return self.interim(modality) if modality == "text" else self.prepared(modality)

    def validation_report(self, modality: str) -> Path:
        return self.validation_dir / f"{check_modality(modality)}.json"

    def data_docs(self, modality: str) -> Path:
        return data_docs_dir(self.validation_dir, modality)

    # ---- pretraining
    def checkpoint_dir(self, modality: str) -> Path:
        return self.models_dir / check_modality(modality)

    def checkpoint(self, modality: str) -> Path:
        return self.checkpoint_dir(modality) / CHECKPOINT_NAME

    def pretrain_log(self, modality: str) -> Path:
        """The pretraining run's DVCLive directory."""
        return self.pretrain_metrics_dir / check_modality(modality)

    def pretrain_summary(self, modality: str) -> Path:
        return self.pretrain_log(modality) / LIVE_SUMMARY_NAME

    def pretrain_steps(self, modality: str) -> Path:
        """A directory: one `step<TAB><metric>` file per metric (DVCLive's plots)."""
        return self.pretrain_log(modality) / LIVE_PLOTS_SUBDIR

    # ---- evaluation
    def eval_metrics(self, modality: str) -> Path:
        """The evaluation records (every field of every task; the report's input)."""
        return self.eval_metrics_dir / f"{check_modality(modality)}.json"

    def eval_log(self, modality: str) -> Path:
        """The evaluation's DVCLive directory: headline metrics for `dvc exp show`."""
        return self.eval_metrics_dir / check_modality(modality)

    def eval_summary(self, modality: str) -> Path:
        return self.eval_log(modality) / LIVE_SUMMARY_NAME

    def eval_tasks(self, modality: str) -> Path:
        return self.eval_metrics_dir / eval_tasks_name(modality)

    def confusion(self, modality: str) -> Path:
        return self.eval_metrics_dir / confusion_name(modality)

    def eval_plot(self, modality: str) -> Path:
        """The evaluate stage's `dvc plots` file: the confusion matrix for images, else the task table."""
        return self.confusion(modality) if modality == "image" else self.eval_tasks(modality)

    # ---- the benchmark report
    @property
    def report_markdown(self) -> Path:
        return self.reports_dir / REPORT_MD_NAME

    @property
    def report_html(self) -> Path:
        return self.reports_dir / REPORT_HTML_NAME

    @property
    def report_figures(self) -> Path:
        return self.reports_dir / REPORT_FIGURES_NAME

    def run_files(self, modality: str) -> list[Path]:
        """What a published run of `modality` holds (files or directories; missing ones are skipped)."""
        return [self.checkpoint_dir(modality), self.pretrain_log(modality),
                self.eval_metrics(modality), self.eval_log(modality), self.eval_plot(modality), self.validation_report(modality),
                self.data_docs(modality),
                self.report_markdown, self.report_html, self.dvc_lock]


__all__ = ["CHECKPOINT_NAME", "DATA_DOCS_NAME", "data_docs_dir", "LIVE_PLOTS_SUBDIR", "LIVE_SUMMARY_NAME", "DOWNLOAD_CACHE_DIR", "DVC_LOCK", "EVAL_METRICS_DIR", "Layout", "METRICS_DIR", "MODALITIES", "MODELS_DIR",
           "Modality", "PARAMS_FILE", "PRETRAIN_METRICS_DIR", "REPORTS_DIR", "check_modality", "confusion_name",
           "eval_tasks_name"]
