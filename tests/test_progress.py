"""d2v.progress: the one bar-or-lines rule and the three callers' lines (pretraining, fine-tuning,
artifact transfers)."""

from __future__ import annotations

import io

import pytest

from d2v.progress import Progress, TransferLog, UpdateLog, human_size, run_label, wants_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)


def test_ci_and_tqdm_disable_turn_the_bar_off(monkeypatch, no_ci) -> None:
    assert wants_bar(FakeTerminal())
    monkeypatch.setenv("CI", "true")
    assert not wants_bar() and not wants_bar(FakeTerminal())
    monkeypatch.delenv("CI")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not wants_bar() and not wants_bar(FakeTerminal())
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert wants_bar(FakeTerminal()) and not wants_bar(io.StringIO())  # a pipe or log file: no bar


# ------------------------------------------------------------------------------------ pretraining


def test_plain_lines_every_log_every_steps_and_at_the_end(monkeypatch, capsys) -> None:
    monkeypatch.setenv("CI", "true")
    progress = Progress("pretrain text", total=5, initial=0, every=2, enabled=True)
    for step in range(1, 6):
        progress.update(step, {"loss": 1.0 / step})
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "[pretrain text] step 2/5 loss=0.5",
        "[pretrain text] step 4/5 loss=0.25",
        "[pretrain text] step 5/5 loss=0.2",
    ]


def test_other_ranks_are_silent(monkeypatch, capsys) -> None:
    monkeypatch.setenv("CI", "true")
    progress = Progress("pretrain image", total=2, initial=0, every=1, enabled=False)
    progress.message("hello")
    progress.update(1, {"loss": 1.0})
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_a_bar_resumed_at_the_initial_step(no_ci) -> None:
    term = FakeTerminal()
    progress = Progress("pretrain image", total=10, initial=4, every=1, stream=term)
    assert progress.bar is not None and progress.bar.n == 4
    progress.update(5, {"loss": 0.5})
    progress.update(6, {"loss": 0.25})
    assert progress.bar.n == 6 and "step 5/10" not in term.getvalue()  # the bar replaces the lines
    progress.close()
    assert progress.bar is None and "pretrain image" in term.getvalue()


# ------------------------------------------------------------------------------------ fine-tuning


def test_a_line_at_every_quarter_with_the_mean_loss_since_the_last() -> None:
    stream = io.StringIO()
    with run_label("random init"):
        log = UpdateLog("text task sentiment", total=8, stream=stream)
    for loss in [4.0, 2.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.75]:
        log.update(loss)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("[evaluate] text task sentiment (random init): update 2/8 loss 3 (")
    assert "update 4/8 loss 1 (" in lines[1] and "update 6/8 loss 0.5 (" in lines[2] and "update 8/8 loss 0.5 (" in lines[3]


def test_the_label_applies_only_inside_and_short_runs_still_report() -> None:
    stream = io.StringIO()
    log = UpdateLog("speech recognition", total=2, stream=stream)
    log.update(1.5)
    log.update(0.5)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[evaluate] speech recognition: update 1/2 loss 1.5")  # no run label outside run_label
    assert lines[-1].startswith("[evaluate] speech recognition: update 2/2 loss 0.5")


def test_fine_tuning_lines_stay_plain_on_a_terminal(no_ci) -> None:
    term = FakeTerminal()  # two runs side by side share one terminal: bars would garble each other
    log = UpdateLog("image fine-tuning", total=4, stream=term)
    for _ in range(4):
        log.update(1.0)
    assert log.progress.bar is None and len(term.getvalue().splitlines()) == 4


# ------------------------------------------------------------------------------ artifact transfers


def test_transfers_show_a_bar_only_for_large_files_on_a_terminal(no_ci) -> None:
    term = FakeTerminal()
    progress = TransferLog(term, large_bytes=100)
    assert progress.file_started("upload", "small", 10) is None
    progress.file_done("upload", "small", 10)
    callback = progress.file_started("upload", "big", 1000)
    assert callback is not None
    callback(600)
    callback(400)
    progress.file_done("upload", "big", 1000)
    assert "upload big" in term.getvalue() and "upload big (1000 B)" in term.getvalue()
    assert "upload small (10 B)\n" in term.getvalue()
    pipe = io.StringIO()  # not a terminal (CI logs): plain lines only
    assert TransferLog(pipe, large_bytes=1).file_started("upload", "big", 1000) is None
    assert human_size(11 * 1024 * 1024) == "11.0 MiB"


def test_transfers_in_ci_print_lines_only(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    term = FakeTerminal()
    progress = TransferLog(term, large_bytes=1)
    assert progress.file_started("download", "ckpt/model.pt", 4096) is None
    progress.file_done("download", "ckpt/model.pt", 4096)
    assert term.getvalue() == "download ckpt/model.pt (4.0 KiB)\n"
