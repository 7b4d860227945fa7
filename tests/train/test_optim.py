import pytest
import torch
from torch import nn

from d2v.train._selftest import StandInModel, tiny_config
from d2v.train.optim import LayerDecay, build_optimizer, param_groups


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_groups_split_decay_and_exclude_teacher() -> None:
    model = StandInModel()
    decay, no_decay = param_groups(model, weight_decay=0.05, lr=1e-3)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert decay["lr"] == no_decay["lr"] == 1e-3
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
    decay, no_decay = param_groups(model, weight_decay=0.1, lr=1.0)
    assert _names(model, decay) == {"proj.weight"}
    assert _names(model, no_decay) == {"cls_token", "pos_embed", "proj.bias"}


def test_build_optimizer_uses_recipe() -> None:
    cfg = tiny_config(lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05)
    opt = build_optimizer(StandInModel(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, eps=cfg.eps)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert [g["lr"] for g in opt.param_groups] == [3e-4, 3e-4]


def test_layer_decay_groups_by_depth_and_keeps_the_decay_rule() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2), nn.Linear(2, 2))  # depths 0, 1, 2 (top)
    model.pos_embed = nn.Parameter(torch.zeros(1, 3, 2))
    depth = {"0": 0, "1": 1, "2": 2, "pos_embed": 0}
    layer_decay = LayerDecay(0.5, top=2, depth_of=lambda name: depth[name.split(".")[0]])
    opt = build_optimizer(model, lr=0.8, weight_decay=0.1, betas=(0.9, 0.999), layer_decay=layer_decay)
    summary = [(g["lr"], g["weight_decay"], _names(model, g)) for g in opt.param_groups]
    assert summary == [
        (pytest.approx(0.2), 0.1, {"0.weight"}),  # input side first: 0.8 * 0.5 ** 2
        (pytest.approx(0.2), 0.0, {"0.bias", "pos_embed"}),
        (pytest.approx(0.4), 0.0, {"1.weight", "1.bias"}),
        (0.8, 0.1, {"2.weight"}),  # the head: the full lr
        (0.8, 0.0, {"2.bias"}),
    ]


def test_cpu_parameters_get_the_fused_adamw_with_the_same_update() -> None:
    torch.manual_seed(0)
    fused_model, plain_model = nn.Linear(8, 8), nn.Linear(8, 8)
    plain_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(fused_model, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.98))
    plain = torch.optim.AdamW(param_groups(plain_model, 0.1, 1e-2), lr=1e-2, betas=(0.9, 0.98), weight_decay=0.1)
    assert fused.defaults["fused"] is True and plain.defaults["fused"] is None
    x = torch.randn(16, 8)
    for _ in range(5):
        for model, opt in ((fused_model, fused), (plain_model, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # the same rule, another summation order at most


def test_meta_parameters_keep_the_default_adamw() -> None:
    model = nn.Linear(4, 4, device="meta")
    assert build_optimizer(model, lr=1e-3, weight_decay=0.0, betas=(0.9, 0.98)).defaults["fused"] is False
