"""The `tree` fixture: a project folder holding the pipeline's outputs (see report_tree.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_tree import Tree, make_tree


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return make_tree(tmp_path)
