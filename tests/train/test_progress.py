from d2v.train.progress import Progress, wants_bar


def test_ci_and_tqdm_disable_turn_the_bar_off(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert not wants_bar()
    monkeypatch.delenv("CI")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not wants_bar()


def test_plain_lines_every_log_every_steps_and_at_the_end(monkeypatch, capsys) -> None:
    monkeypatch.setenv("CI", "true")
    progress = Progress("pretrain text", total=5, initial=0, log_every=2, enabled=True)
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
    progress = Progress("pretrain image", total=2, initial=0, log_every=1, enabled=False)
    progress.message("hello")
    progress.update(1, {"loss": 1.0})
    assert capsys.readouterr().err == ""
