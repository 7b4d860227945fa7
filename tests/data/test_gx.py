"""The saved suites are valid GX suites, and run_checkpoint runs them and builds Data Docs."""

import json
import re
from pathlib import Path

import pytest

from d2v.data.gx import SUITES_DIR, Check, load_suite, run_checkpoint
from d2v.errors import D2VError

SUITE_FILES = sorted(SUITES_DIR.glob("*.json"))


def _parameters(tree: object) -> set[str]:
    return set(re.findall(r'"\$PARAMETER": "([^"]+)"', json.dumps(tree)))


@pytest.mark.parametrize("path", SUITE_FILES, ids=lambda p: p.stem)
def test_every_suite_file_is_a_gx_suite_named_after_its_file(path: Path) -> None:
    import great_expectations as gx

    tree = json.loads(path.read_text(encoding="utf-8"))
    suite = gx.ExpectationSuite(**tree)  # unknown expectation types or kwargs raise here
    assert suite.name == path.stem and len(suite.expectations) == len(tree["expectations"]) > 0
    # Every placeholder says where its value comes from, for whoever edits the suite.
    assert _parameters(tree["expectations"]) == set(tree["meta"]["parameters"]), path.name


def test_the_suites_cover_every_modality() -> None:
    assert {p.stem.split(".")[0] for p in SUITE_FILES} == {"image", "speech", "text", "shared"}


def test_load_suite_fills_parameters_and_names_a_missing_one() -> None:
    filled = load_suite("text.labels", {"max_label": 4})
    assert filled["expectations"][0]["kwargs"]["max_value"] == 4 and not _parameters(filled)
    with pytest.raises(D2VError, match=r"text\.labels\.json: suite parameter 'max_label' has no value"):
        load_suite("text.labels", {})


def test_checkpoint_reports_a_failed_expectation_and_builds_data_docs(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "tasks" / "toy.csv"
    table.parent.mkdir()
    table.write_text("id,split,text_a,text_b,label\na,train,x,,0\na,valid,y,,1\nc,test,z,,7\n")
    read = {"dtype": {"id": "str", "text_b": "str"}, "keep_default_na": False}
    checks = [Check("toy", table, str(table), "text.task", {"min_text_b_length": 0}, read, "text.task.toy"),
              Check("toy", table, str(table), "text.labels", {"max_label": 1}, read, "text.labels.toy")]
    records = run_checkpoint("text", checks, tmp_path / "docs")
    failed = {(r["suite"], r["expectation"]): r for r in records if not r["success"]}
    assert set(failed) == {("text.task.toy", "expect_column_values_to_be_unique"),
                           ("text.labels.toy", "expect_column_values_to_be_between")}
    assert failed[("text.task.toy", "expect_column_values_to_be_unique")]["examples"] == ["a", "a"]
    assert failed[("text.labels.toy", "expect_column_values_to_be_between")]["ids"] == ["c"]
    assert all(r["file"] == str(table) for r in records)
    index = (tmp_path / "docs" / "index.html").read_text(encoding="utf-8")
    assert "text.task.toy" in index and "text.labels.toy" in index
    assert list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert "Calculating Metrics" not in capfd.readouterr().err  # no GX progress bars in stage logs


def test_two_checks_with_one_name_are_refused(tmp_path: Path) -> None:
    check = Check("t", tmp_path / "t.csv", "t.csv", "text.labels", {"max_label": 1})
    with pytest.raises(D2VError, match="share a suite name"):
        run_checkpoint("text", [check, check], tmp_path / "docs")
