from __future__ import annotations

import io

from d2v.eval.progress import UpdateLog, run_label


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
