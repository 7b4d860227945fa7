"""dvc.yaml entry point: `python -m pipelines.stages.data <action> <modality>` = `d2v data ...`."""

from __future__ import annotations

import sys

from d2v.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", *sys.argv[1:]]))
