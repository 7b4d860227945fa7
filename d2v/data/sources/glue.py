"""GLUE: the official task files, downloaded and pinned, read into our task rows.

Downloads follow the official GLUE script (nyu-mll/GLUE-baselines download_glue_data.py): one zip
per task under `base_url`, each unpacking to its task folder (QQP-clean.zip -> QQP/, QNLIv2.zip ->
QNLI/). MRPC is no GLUE zip: its train.tsv/dev.tsv are cut from SentEval's msr_paraphrase_train.txt
by the pairs listed in mrpc_dev_ids.tsv. Every file must be pinned in `sha256` (file name -> digest).

GLUE's own test files carry no labels, so GLUE dev is our test split and a seeded fraction of GLUE
train is held out as valid. MNLI has two dev sets: dev_matched is `test`, dev_mismatched is
`test_mismatched` of the same task, so one fine-tuning scores both. Labels become ints
(classification) or floats (STS-B regression).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from d2v.data.config import GlueSource
from d2v.data.download import download, extract
from d2v.data.io import assign_split
from d2v.data.shards import SkipLog
from d2v.errors import D2VError

Column = str | int  # a header name, or an index in a file without a header
Example = tuple[str, str, str, str, float | int]  # id, split, text_a, text_b, label
MRPC_TRAIN, MRPC_DEV_IDS = "msr_paraphrase_train.txt", "mrpc_dev_ids.tsv"


@dataclass(frozen=True)
class GlueTask:
    archive: str  # file name under base_url ('' for MRPC, built from SentEval files)
    folder: str  # the folder the archive unpacks to
    dev_files: tuple[tuple[str, str], ...]  # (GLUE dev file, our split)
    header: bool
    text_a: Column
    text_b: Column | None
    label: Column
    label_names: tuple[str, ...] | None  # None = regression
    id_column: Column | None = None  # the file's own example id; None = its line number


NLI = ("entailment", "not_entailment")
GLUE_TASKS: dict[str, GlueTask] = {
    "CoLA": GlueTask("CoLA.zip", "CoLA", (("dev.tsv", "test"),), False, 3, None, 1, ("0", "1")),
    "SST-2": GlueTask("SST-2.zip", "SST-2", (("dev.tsv", "test"),), True, "sentence", None, "label", ("0", "1")),
    "MRPC": GlueTask("", "MRPC", (("dev.tsv", "test"),), True, "#1 String", "#2 String", "Quality", ("0", "1")),
    "QQP": GlueTask("QQP-clean.zip", "QQP", (("dev.tsv", "test"),), True, "question1", "question2",
                    "is_duplicate", ("0", "1"), "id"),
    "STS-B": GlueTask("STS-B.zip", "STS-B", (("dev.tsv", "test"),), True, "sentence1", "sentence2", "score",
                      None, "index"),
    "MNLI": GlueTask("MNLI.zip", "MNLI", (("dev_matched.tsv", "test"), ("dev_mismatched.tsv", "test_mismatched")),
                     True, "sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"), "index"),
    "QNLI": GlueTask("QNLIv2.zip", "QNLI", (("dev.tsv", "test"),), True, "question", "sentence", "label", NLI, "index"),
    "RTE": GlueTask("RTE.zip", "RTE", (("dev.tsv", "test"),), True, "sentence1", "sentence2", "label", NLI, "index"),
    "WNLI": GlueTask("WNLI.zip", "WNLI", (("dev.tsv", "test"),), True, "sentence1", "sentence2", "label",
                     ("0", "1"), "index"),
}  # fmt: skip


def task_key(name: str) -> str:
    """The prepared task name ("SST-2" -> "sst2"), as the evaluation spells it."""
    return name.lower().replace("-", "")


def task_spec(name: str) -> GlueTask:
    if name not in GLUE_TASKS:
        raise D2VError(f"data.text.glue.tasks: unknown task {name!r} (known: {', '.join(GLUE_TASKS)})")
    return GLUE_TASKS[name]


# ---------------------------------------------------------------------------------------- download


def task_urls(cfg: GlueSource, name: str) -> list[tuple[str, str]]:
    """(url, file name) of everything a task needs, as the official download script fetches it."""
    spec = task_spec(name)
    if name == "MRPC":
        return [(f"{cfg.senteval_url}/{MRPC_TRAIN}", MRPC_TRAIN), (f"{cfg.base_url}/{MRPC_DEV_IDS}", MRPC_DEV_IDS)]
    return [(f"{cfg.base_url}/{spec.archive}", spec.archive)]


def download_glue(cfg: GlueSource, cache_dir: Path, out_dir: Path) -> dict[str, str]:
    """Fetch and verify every file of cfg.tasks; unpack zips (members checked) into out_dir/<folder>.
    Returns file name -> sha256."""
    digests = {}
    for name in cfg.tasks:
        for url, file_name in task_urls(cfg, name):
            pinned = cfg.sha256.get(file_name, "")
            if not pinned:
                raise D2VError(f"data.text.glue.sha256: no checksum pinned for {file_name} ({url}); "
                               "add its sha256 (params.yaml lists the official files')")  # fmt: skip
            cached = cache_dir / file_name
            digests[file_name] = download(url, cached, pinned)
            if file_name.endswith(".zip"):
                extract(cached, out_dir)
            else:
                (out_dir / task_spec(name).folder).mkdir(parents=True, exist_ok=True)
                shutil.copy2(cached, out_dir / task_spec(name).folder / file_name)
        if name == "MRPC":
            build_mrpc(out_dir / task_spec(name).folder)
    return digests


# ----------------------------------------------------------------------------------------- reading


def read_glue_tasks(cfg: GlueSource, seed: int, glue_dir: Path) -> tuple[dict[str, list[Example]], dict]:
    """Every task's rows and meta (num_classes, pair, label_names) from the unpacked GLUE folders."""
    tasks, meta = {}, {}
    for name in cfg.tasks:
        spec = task_spec(name)
        folder = glue_dir / spec.folder
        rows: list[Example] = []
        files = [("train.tsv", "train"), *spec.dev_files]
        for file_name, split in files:
            rows += _read_task_file(folder / file_name, spec, task_key(name), split, seed, cfg)
        tasks[task_key(name)] = rows
        meta[task_key(name)] = {
            "num_classes": len(spec.label_names) if spec.label_names else 1,
            "pair": spec.text_b is not None,
            "label_names": list(spec.label_names or ()),
        }
    return tasks, meta


def _read_task_file(path: Path, spec: GlueTask, task: str, split: str, seed: int, cfg: GlueSource) -> list[Example]:
    """One GLUE tsv -> rows; `split` "train" is cut into train/valid by a stable hash of the id."""
    records = read_tsv(path)
    header = [h.lstrip("\ufeff") for h in next(records)[1]] if spec.header else None
    index = _column_index(path, header)
    ia, il = index(spec.text_a), index(spec.label)
    ib = index(spec.text_b) if spec.text_b is not None else None
    iid = index(spec.id_column) if spec.id_column is not None else None
    needed = max(i for i in (ia, il, ib, iid) if i is not None)
    skips = SkipLog(f"{path}: rows with too few columns", cfg.max_skipped_fraction)
    rows: list[Example] = []
    seen: dict[str, int] = {}
    for line_no, fields in records:
        if len(fields) <= needed:
            skips.skip(f"line {line_no}", f"{len(fields)} columns")  # GLUE's QQP/MNLI have a few; the official loaders skip them
            continue
        skips.ok()
        source_id = fields[iid] if iid is not None else str(line_no)
        if source_id in seen:
            raise D2VError(f"{path}:{line_no}: duplicate id {source_id!r} (first on line {seen[source_id]})")
        seen[source_id] = line_no
        key = f"{task}-{path.stem}-{source_id}"
        row_split = assign_split(key, seed, cfg.valid_fraction) if split == "train" else split
        label = _label(fields[il], spec, path, line_no)
        rows.append((key, row_split, fields[ia], fields[ib] if ib is not None else "", label))
    skips.check()
    return rows


def read_tsv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of a UTF-8 file, streamed; GLUE files use no quoting."""
    try:
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise D2VError(f"{path}:{line_no}: not UTF-8 ({exc.reason} at byte {exc.start} of the line)") from None
                yield line_no, line.rstrip("\r\n").split("\t")
    except FileNotFoundError:
        raise D2VError(f"{path}: missing; run the download stage (dvc repro download@text)") from None


def _column_index(path: Path, header: list[str] | None):
    def index(column: Column) -> int:
        if header is None:
            return int(column)
        if column not in header:
            raise D2VError(f"{path}: missing column {column!r} (header: {header})")
        return header.index(str(column))

    return index


def _label(value: str, spec: GlueTask, path: Path, line_no: int) -> float | int:
    if spec.label_names is None:
        try:
            return float(value)
        except ValueError:
            raise D2VError(f"{path}:{line_no}: score {value!r} is not a number") from None
    if value not in spec.label_names:
        raise D2VError(f"{path}:{line_no}: label {value!r} not in {list(spec.label_names)}")
    return spec.label_names.index(value)


def build_mrpc(folder: Path) -> None:
    """train.tsv and dev.tsv from msr_paraphrase_train.txt, split by the (#1 ID, #2 ID) pairs of
    mrpc_dev_ids.tsv, as the official script's format_mrpc does (the download stage runs it)."""
    dev_ids = {tuple(fields[:2]) for _, fields in read_tsv(folder / MRPC_DEV_IDS) if len(fields) >= 2}
    source = read_tsv(folder / MRPC_TRAIN)
    header = "\t".join(next(source)[1]).lstrip("\ufeff")
    with open(folder / "train.tsv", "w", encoding="utf-8") as train, open(folder / "dev.tsv", "w", encoding="utf-8") as dev:
        for out in (train, dev):
            out.write(header + "\n")
        for _, fields in source:
            (dev if tuple(fields[1:3]) in dev_ids else train).write("\t".join(fields) + "\n")
