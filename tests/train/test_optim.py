import torch
from torch import nn

from d2v.train._selftest import StandInModel, tiny_config
from d2v.train.optim import build_optimizer, param_groups


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_groups_split_decay_and_exclude_teacher() -> None:
    model = StandInModel()
    decay, no_decay = param_groups(model, weight_decay=0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert _names(model, decay) == {"student.proj.weight", "student.out.weight"}
    assert _names(model, no_decay) == {
        "student.pos_embed", "student.proj.bias", "student.norm.weight", "student.norm.bias",
        "student.out.bias", "mask_embed",
    }
    assert not any(n.startswith("teacher.") for n in _names(model, decay) | _names(model, no_decay))


def test_named_2d_tokens_are_not_decayed() -> None:
    model = nn.Module()
    model.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
    model.pos_embed = nn.Parameter(torch.zeros(1, 9, 4))
    model.proj = nn.Linear(4, 4)
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert _names(model, decay) == {"proj.weight"}
    assert _names(model, no_decay) == {"cls_token", "pos_embed", "proj.bias"}


def test_build_optimizer_uses_recipe() -> None:
    cfg = tiny_config(lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05)
    opt = build_optimizer(StandInModel(), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
