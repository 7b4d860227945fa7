"""EMA teacher: an fp32 copy of (part of) the student, updated after each optimizer step."""

from __future__ import annotations

import copy

import torch
from torch import nn

from d2v.core.spec import EmaSpec


def ema_decay(step: int, spec: EmaSpec) -> float:
    """tau rises linearly from tau0 to tau_end over `anneal_steps` updates, then stays constant."""
    if spec.anneal_steps <= 0 or step >= spec.anneal_steps:
        return spec.tau_end
    return spec.tau0 + (spec.tau_end - spec.tau0) * step / spec.anneal_steps


class EmaTeacher(nn.Module):
    """Holds `module`, an EMA copy of the student module it was built from.

    The copy never requires gradients, stays in eval mode (no dropout / layer drop in targets) and
    is kept in fp32 whatever the student's dtype. `num_updates` is a buffer, so checkpoints resume
    the tau schedule exactly.
    """

    def __init__(self, student: nn.Module, spec: EmaSpec) -> None:
        super().__init__()
        self.spec = spec
        self.module = copy.deepcopy(student).float()
        self.module.requires_grad_(False)
        self.module.eval()
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> "EmaTeacher":
        super().train(mode)
        self.module.eval()  # the teacher is never in training mode
        return self

    @property
    def tau(self) -> float:
        return ema_decay(int(self.num_updates), self.spec)

    @torch.no_grad()
    def update(self, student: nn.Module) -> float:
        """teacher <- tau * teacher + (1 - tau) * student; returns the tau used."""
        tau = self.tau
        teacher_params = list(self.module.parameters())
        student_params = [p.detach().to(torch.float32) for p in student.parameters()]
        if len(teacher_params) != len(student_params):
            raise RuntimeError("EMA teacher and student have different parameter lists")
        torch._foreach_lerp_(teacher_params, student_params, 1.0 - tau)
        for t_buf, s_buf in zip(self.module.buffers(), student.buffers()):
            t_buf.copy_(s_buf)
        self.num_updates += 1
        return tau
