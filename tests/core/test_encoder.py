"""Transformer encoder: ALiBi attention biases (data2vec 2.0 audio)."""

from __future__ import annotations

import pytest
import torch

from d2v.core.encoder import TransformerEncoder, alibi_bias, alibi_slopes
from d2v.core.spec import EncoderSpec


def encoder(alibi: bool) -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(EncoderSpec(dim=16, depth=2, heads=4, norm_first=False, alibi=alibi)).eval()


def test_slopes_are_the_alibi_geometric_sequence() -> None:
    assert alibi_slopes(4).tolist() == [0.25, 0.0625, 0.015625, 0.00390625]
    assert alibi_slopes(8)[-1].item() == pytest.approx(2.0**-8)


def test_bias_is_minus_slope_times_distance_and_excludes_padded_keys() -> None:
    positions = torch.tensor([[0, 2, 5]])
    padding = torch.tensor([[False, False, True]])
    bias = alibi_bias(positions, heads=2, padding_mask=padding)  # slopes 1/16, 1/256
    assert bias.shape == (1, 2, 3, 3)
    assert bias[0, 0, 0, 1].item() == pytest.approx(-2 / 16)
    assert bias[0, 1, 1, 0].item() == pytest.approx(-2 / 256)
    assert bias[0, 0, 1, 1].item() == 0.0
    assert torch.isinf(bias[0, :, :, 2]).all()


def test_alibi_changes_attention_but_keeps_shapes() -> None:
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(1))
    plain, with_bias = encoder(False), encoder(True)
    with_bias.load_state_dict(plain.state_dict())
    out_plain, _ = plain(x)
    out_bias, layers = with_bias(x, collect="ffn")
    assert out_bias.shape == out_plain.shape and len(layers) == 2
    assert not torch.allclose(out_bias, out_plain)


def test_a_subset_with_its_original_positions_matches_slicing_positions_explicitly() -> None:
    # The v2 student sees only kept steps; passing their original positions must give the same
    # result as the default 0..T-1 whenever the kept steps are exactly 0..K-1.
    model = encoder(True)
    x = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(2))
    default, _ = model(x)
    explicit, _ = model(x, positions=torch.arange(5)[None])
    spread, _ = model(x, positions=torch.tensor([[0, 3, 6, 9, 12]]))
    torch.testing.assert_close(default, explicit)
    assert not torch.allclose(default, spread)


def test_padded_steps_do_not_change_the_real_ones_with_alibi() -> None:
    model = encoder(True)
    x = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(3))
    padded = torch.cat([x, torch.randn(1, 3, 16)], dim=1)
    padding = torch.tensor([[False] * 4 + [True] * 3])
    alone, _ = model(x)
    with_pad, _ = model(padded, padding)
    torch.testing.assert_close(with_pad[:, :4], alone, atol=1e-5, rtol=1e-5)


def test_collect_block_gives_each_block_output_and_ffn_its_pre_residual_branch() -> None:
    # The speech demo's targets come from "block"; data2vec's speech/text default is "ffn".
    model = encoder(False)
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(4))
    out, blocks = model(x, collect="block")
    _, ffns = model(x, collect="ffn")
    assert len(blocks) == len(ffns) == 2
    first_out, first_ffn = model.blocks[0](model.input_norm(x))
    torch.testing.assert_close(blocks[0], first_out)
    torch.testing.assert_close(ffns[0], first_ffn)
    second_out, second_ffn = model.blocks[1](blocks[0])
    torch.testing.assert_close(blocks[1], second_out)
    torch.testing.assert_close(ffns[1], second_ffn)
    torch.testing.assert_close(out, blocks[-1])  # post-LN: no final norm after the last block


def test_alibi_slopes_follow_the_released_rule_for_any_head_count() -> None:
    from d2v.core.encoder import alibi_slopes

    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]))
    # 6 heads: the 4-head slopes, then every other slope of 8 heads (2^-1, 2^-3).
    expected = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(expected))


def test_learned_alibi_scale_is_a_per_head_parameter_clamped_at_zero() -> None:
    from d2v.core.spec import EncoderSpec
    from d2v.core.encoder import TransformerEncoder

    spec = EncoderSpec(dim=16, depth=1, heads=4, norm_first=False, alibi=True, alibi_learned_scale=True)
    model = TransformerEncoder(spec).eval()
    assert isinstance(model.alibi_scale, torch.nn.Parameter) and model.alibi_scale.shape == (4,)
    x = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.alibi_scale.fill_(-3.0)  # clamped to 0: no bias at all
    no_bias, _ = model(x)
    plain = TransformerEncoder(EncoderSpec(dim=16, depth=1, heads=4, norm_first=False))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "alibi_scale"})
    torch.testing.assert_close(no_bias, plain.eval()(x)[0])


def _attention_inputs(seed: int, padded_keys: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(3, 4, 37, 8, generator=g, requires_grad=True) for _ in range(3))
    bias = torch.randn(3, 4, 37, 37, generator=g)
    bias[1, :, :, 37 - padded_keys:] = float("-inf")  # one row's padded keys, as alibi_bias writes them
    return q, k, v, bias.requires_grad_(True)


@pytest.mark.parametrize("seed, padded_keys", [(0, 0), (1, 5), (2, 36)])
def test_math_attention_is_bit_for_bit_sdpa_in_outputs_and_every_gradient(seed: int, padded_keys: int) -> None:
    from d2v.core.encoder import math_attention

    q, k, v, bias = _attention_inputs(seed, padded_keys)
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    ours = math_attention(q, k, v, bias)
    assert torch.equal(ours, reference)
    upstream = torch.randn_like(reference, generator=torch.Generator().manual_seed(seed + 10))
    expected = torch.autograd.grad(reference, (q, k, v, bias), upstream)
    got = torch.autograd.grad(ours, (q, k, v, bias), upstream)
    for name, a, b in zip("q k v bias".split(), got, expected):
        assert torch.equal(a, b), f"d{name} differs from SDPA's by {(a - b).abs().max().item()}"


def test_the_math_path_is_taken_only_for_a_cpu_bias_that_needs_a_gradient() -> None:
    from d2v.core.encoder import takes_cpu_math_path

    q, _, _, bias = _attention_inputs(0, 0)
    assert takes_cpu_math_path(q, bias)
    assert not takes_cpu_math_path(q, bias.detach())  # the teacher's and evaluation's bias: SDPA's fused kernels
    with torch.no_grad():
        assert not takes_cpu_math_path(q, bias)


def test_a_learned_alibi_scale_gets_the_same_gradient_through_either_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    import d2v.core.encoder as encoder_module

    spec = EncoderSpec(dim=16, depth=2, heads=4, norm_first=False, alibi=True, alibi_learned_scale=True)
    x = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(3))
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[1, 6:] = True

    def gradients() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = TransformerEncoder(spec).train()
        out, _ = model(x, padding_mask=padding)
        out[~padding].square().sum().backward()
        return {name: p.grad for name, p in model.named_parameters()}

    fast = gradients()
    monkeypatch.setattr(encoder_module, "takes_cpu_math_path", lambda q, mask: False)  # always SDPA
    reference = gradients()
    assert fast["alibi_scale"].abs().sum() > 0
    for name, grad in reference.items():
        assert torch.equal(fast[name], grad), name
