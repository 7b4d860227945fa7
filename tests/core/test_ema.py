from __future__ import annotations

import pytest
import torch
from torch import nn

from d2v.core.ema import EmaTeacher, ema_decay
from d2v.core.spec import EmaSpec

SPEC = EmaSpec(tau0=0.99, tau_end=0.999, anneal_steps=100)


@pytest.mark.parametrize(
    ("step", "tau"), [(0, 0.99), (50, 0.9945), (100, 0.999), (10_000, 0.999)]
)
def test_tau_schedule_golden(step: int, tau: float) -> None:
    assert ema_decay(step, SPEC) == pytest.approx(tau)


def test_constant_schedule_when_no_annealing() -> None:
    assert ema_decay(0, EmaSpec(tau0=0.9998, tau_end=0.9998, anneal_steps=0)) == 0.9998


def test_teacher_moves_by_the_scheduled_amount_and_never_requires_grad() -> None:
    torch.manual_seed(0)
    student = nn.Linear(3, 2)
    teacher = EmaTeacher(student, SPEC)
    assert all(not p.requires_grad for p in teacher.parameters())
    before = teacher.module.weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    tau = teacher.update(student)
    assert tau == 0.99 and int(teacher.num_updates) == 1
    torch.testing.assert_close(teacher.module.weight, 0.99 * before + 0.01 * student.weight)
    assert teacher.tau == pytest.approx(ema_decay(1, SPEC))


def test_teacher_stays_in_eval_mode() -> None:
    teacher = EmaTeacher(nn.Dropout(0.5), SPEC)
    teacher.train()
    assert not teacher.module.training
