"""Printed at the end of `make demo`: where the pipeline's outputs are."""

from __future__ import annotations

from pathlib import Path

OUTPUT_GLOBS = ("reports/*.html", "reports/*.md", "metrics/**/*.json", "reports/validation/*.json")


def main() -> None:
    found = sorted({p for pattern in OUTPUT_GLOBS for p in Path(".").glob(pattern)})
    if not found:
        print("d2v demo: the pipeline produced no reports or metrics yet (see dvc.yaml)")
        return
    print("d2v demo: outputs")
    for path in found:
        print(f"  {path}")


if __name__ == "__main__":
    main()
