"""One forward/backward over every registered preset at tiny width, plus the v2 efficiency facts."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from d2v.config import ConfigError, ModelChoice
from d2v.core.data2vec import CollapseError, Data2Vec
from d2v.core.ema import ema_decay
from d2v.errors import D2VError
from d2v.models import build_model, model_spec, registered_presets

from tiny_models import FRONT_OVERRIDES, TINY_WIDTH, batch_for, tiny_batch, tiny_model

@pytest.mark.parametrize(("modality", "version", "preset"), registered_presets())
def test_every_student_parameter_gets_a_gradient_and_no_teacher_parameter(modality: str, version: int, preset: str) -> None:
    model = tiny_model(modality, version, preset)
    out = model(batch_for(model), generator=torch.Generator().manual_seed(0))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    for name, param in model.named_parameters():
        if name.startswith("teacher."):
            assert not param.requires_grad and param.grad is None, name
        else:
            assert param.grad is not None and param.grad.abs().sum() > 0, f"{name} got no gradient"
    assert {"target_var", "pred_var", "tau", "masked_fraction"} <= set(out.logs)


@pytest.mark.parametrize(("modality", "version"), [(m, v) for m in ("image", "speech", "text") for v in (1, 2)])
def test_ema_step_moves_teacher_by_the_scheduled_amount(modality: str, version: int) -> None:
    model = tiny_model(modality, version, "tiny")
    teacher_block = model.teacher.module["encoder"].blocks[0].fc1.weight
    student_block = model.encoder.blocks[0].fc1.weight
    with torch.no_grad():
        student_block.add_(0.5)
    before = teacher_block.clone()
    tau = ema_decay(0, model.spec.ema)
    assert model.ema_step() == tau
    torch.testing.assert_close(teacher_block, tau * before + (1 - tau) * student_block)


@pytest.mark.parametrize("modality", ["image", "speech", "text"])
def test_v2_student_sees_exactly_the_unmasked_tokens_and_teacher_runs_once(modality: str) -> None:
    model = tiny_model(modality, 2, "tiny")
    batch = batch_for(model)
    seen: dict[str, list[tuple[int, ...]]] = {"student": [], "teacher": []}
    model.encoder.register_forward_pre_hook(lambda m, args: seen["student"].append(tuple(args[0].shape)))
    model.teacher.module["encoder"].register_forward_pre_hook(lambda m, args: seen["teacher"].append(tuple(args[0].shape)))
    masks: list[torch.Tensor] = []
    draw = model.draw_mask
    model.draw_mask = lambda features, generator: masks.append(draw(features, generator)) or masks[-1]  # type: ignore[method-assign]
    model(batch, generator=torch.Generator().manual_seed(0))

    n_samples = next(iter(batch.values())).shape[0]
    clones = model.spec.clone_batch
    assert len(seen["teacher"]) == 1 and seen["teacher"][0][0] == n_samples  # once per sample, not per clone
    (student_shape,) = seen["student"]
    assert student_shape[0] == n_samples * clones
    features = model.frontend.local_features(batch)
    valid = torch.ones_like(masks[0]) if features.padding_mask is None else ~features.padding_mask.repeat_interleave(clones, 0)
    kept_per_row = (~masks[0] & valid).sum(1)
    assert (kept_per_row == kept_per_row[0]).all()
    assert student_shape[1] == int(kept_per_row[0]) + model.frontend.num_extra_tokens


def test_v1_student_sees_the_full_masked_sequence() -> None:
    model = tiny_model("speech", 1, "tiny")
    shapes: list[tuple[int, ...]] = []
    model.encoder.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    batch = batch_for(model)
    model(batch)
    frames = model.frontend.local_features(batch).x.shape[1]
    assert shapes == [(2, frames, 32)]


def test_same_seed_same_loss_different_seed_different_loss() -> None:
    losses = []
    for seed in (0, 0, 1):
        model = tiny_model("image", 2, "tiny")
        losses.append(float(model(batch_for(model), generator=torch.Generator().manual_seed(seed)).loss.detach()))
    assert losses[0] == losses[1] != losses[2]


def test_collapse_guard_raises_after_warmup_in_training_only() -> None:
    model = tiny_model("text", 1, "tiny")
    model.spec = model.spec.__class__(**{**model.spec.__dict__, "collapse": model.spec.collapse.__class__(warmup_steps=0, min_target_var=1e9, min_pred_var=0.0)})
    model.eval()
    model(batch_for(model))  # evaluation never aborts
    model.train()
    with pytest.raises(CollapseError, match="target variance .* < collapse.min_target_var"):
        model(batch_for(model))


def test_student_encoder_outputs_features_without_masking() -> None:
    model = tiny_model("image", 1, "tiny")
    encoder = model.student_encoder()
    out = encoder(batch_for(model))
    assert out.x.shape == (3, 16, 32) and out.cls is not None and out.cls.shape == (3, 32)
    assert encoder.embed_dim == 32 and len(encoder.blocks) == 2
    speech = tiny_model("speech", 2, "tiny").student_encoder()(tiny_batch("speech"))
    assert speech.padding_mask is not None and speech.padding_mask[1].sum() > 0


@pytest.mark.parametrize(
    ("modality", "expected_millions"),
    [("image", 86.0), ("speech", 94.0), ("text", 125.0)],  # ViT-B/16, wav2vec 2.0 base, RoBERTa base
)
def test_base_presets_match_the_papers_model_sizes(modality: str, expected_millions: float) -> None:
    for version in (1, 2):
        with torch.device("meta"):
            model = build_model(model_spec(modality, ModelChoice(version=version, preset="base")))
        count = sum(p.numel() for p in model.student_encoder().parameters()) / 1e6
        assert count == pytest.approx(expected_millions, rel=0.02), (modality, version, count)


def test_overrides_are_checked_with_dotted_paths() -> None:
    with pytest.raises(ConfigError, match=r"model\.image\.overrides\.encoder\.dpeth: unknown key"):
        model_spec("image", ModelChoice(version=2, preset="tiny", overrides={"encoder": {"dpeth": 3}}))
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        model_spec("image", ModelChoice(version=2, preset="huge"))


@pytest.mark.parametrize("modality", ["image", "speech", "text"])
def test_v2_student_output_does_not_depend_on_masked_content(modality: str) -> None:
    """The speech positional encoder is a convolution over content: masked frames must be zeroed
    before it runs, or their content reaches the kept neighbours and the student can copy its targets."""
    model = tiny_model(modality, 2, "tiny")
    features = model.frontend.local_features(batch_for(model))
    mask = model.draw_mask(features, torch.Generator().manual_seed(0))
    original = features.x.contiguous()  # same memory layout for both: randn_like follows strides
    changed = (original.masked_fill(mask.unsqueeze(-1), 0.0) + 5.0 * mask.unsqueeze(-1)).contiguous()
    preds = []
    for x in (original, changed):
        torch.manual_seed(0)  # the decoder's noise at masked positions
        pred, _ = model._student_v2(features.__class__(x, features.padding_mask, features.grid), mask)
        preds.append(pred)
    torch.testing.assert_close(preds[0], preds[1])
    assert not torch.equal(features.x, changed)


def speech_v2_with(**overrides: Any) -> Data2Vec:
    base = {**TINY_WIDTH, **FRONT_OVERRIDES["speech"], "decoder": {"dim": 16, "groups": 4}}
    base["encoder"] = {**TINY_WIDTH["encoder"], **overrides.pop("encoder", {})}
    torch.manual_seed(0)
    return build_model(model_spec("speech", ModelChoice(version=2, preset="tiny", overrides={**base, **overrides})))


def test_alibi_student_trains_and_still_ignores_masked_content() -> None:
    model = speech_v2_with(encoder={"alibi": True})
    batch = batch_for(model)
    out = model(batch, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.encoder.blocks[0].attn.qkv.weight.grad is not None
    features = model.frontend.local_features(batch)
    mask = model.draw_mask(features, torch.Generator().manual_seed(0))
    changed = features.x.masked_fill(mask.unsqueeze(-1), 3.0).contiguous()
    preds = []
    for x in (features.x.contiguous(), changed):
        torch.manual_seed(0)
        preds.append(model._student_v2(features.__class__(x, features.padding_mask, features.grid), mask)[0])
    torch.testing.assert_close(preds[0], preds[1])


def test_alibi_is_refused_where_a_cls_token_has_no_time_position() -> None:
    overrides = {**TINY_WIDTH, **FRONT_OVERRIDES["image"], "decoder": {"dim": 16, "groups": 4}}
    overrides["encoder"] = {**TINY_WIDTH["encoder"], "alibi": True}
    with pytest.raises(D2VError, match="alibi is not supported for image"):
        build_model(model_spec("image", ModelChoice(version=2, preset="tiny", overrides=overrides)))


def test_shared_local_features_teacher_uses_the_student_cnn_and_its_own_positional_encoder() -> None:
    model = speech_v2_with(ema={"include_frontend": True, "share_local_features": True})
    batch = batch_for(model)
    features = model.frontend.local_features(batch)
    before = model.teacher_targets(batch, features)
    teacher_frontend = model.teacher.module["frontend"]
    with torch.no_grad():
        teacher_frontend.local_encoder.blocks[0][0].weight.zero_()  # the teacher's CNN copy is unused
    torch.testing.assert_close(model.teacher_targets(batch, features), before)
    with torch.no_grad():
        teacher_frontend.pos_conv[0][0].weight.mul_(3.0)  # ... its positional encoder is its own
    assert not torch.allclose(model.teacher_targets(batch, features), before)
    with torch.no_grad():
        model.frontend.pos_conv[0][0].weight.add_(1.0)  # the student's is not the teacher's
        model.ema_step()
    moved = teacher_frontend.pos_conv[0][0].weight
    assert not torch.allclose(moved, model.frontend.pos_conv[0][0].weight)


def test_shared_local_features_without_a_teacher_front_end_is_refused() -> None:
    with pytest.raises(D2VError, match="share_local_features needs ema.include_frontend"):
        speech_v2_with(ema={"include_frontend": False, "share_local_features": True})


# ---- parity with the released code: CLS loss, the teacher's own CLS token, undropped teacher input ----


def test_v2_cls_loss_regresses_the_cls_output_and_sums_over_rows() -> None:
    from d2v.core.data2vec import _repeat
    from d2v.core.loss import regression_loss

    model = tiny_model("image", 2, "tiny")
    assert model.spec.loss.cls_weight == 0.01 and not hasattr(model, "cls_head")
    batch = batch_for(model)
    torch.manual_seed(5)
    total = model(batch, generator=torch.Generator().manual_seed(0)).loss

    features = model.frontend.local_features(batch)
    targets = model.teacher_targets(batch, features).repeat_interleave(2, dim=0)
    clones = _repeat(features, 2)
    mask = model.draw_mask(clones, torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    pred, cls_out = model._student_v2(clones, mask)
    main = regression_loss(pred[mask], targets[mask], model.spec.loss).mean()
    per_row = regression_loss(cls_out, targets.mean(dim=1), model.spec.loss)  # (B*M,)
    assert per_row.shape == (6,)
    torch.testing.assert_close(total, main + 0.01 * per_row.sum())  # a sum: (B*M)x a mean's weight


def test_v2_image_teacher_prepends_its_own_ema_cls_token() -> None:
    model = tiny_model("image", 2, "tiny")
    batch = batch_for(model)
    features = model.frontend.local_features(batch)
    before = model.teacher_targets(batch, features)
    with torch.no_grad():
        model.frontend.cls_token.add_(5.0)
    torch.testing.assert_close(model.teacher_targets(batch, features), before)
    with torch.no_grad():
        model.teacher.module["frontend"].cls_token.add_(5.0)
    assert not torch.allclose(model.teacher_targets(batch, features), before)


def test_speech_front_end_applies_no_dropout_so_the_teacher_input_is_clean() -> None:
    model = speech_v2_with(encoder={"dropout": 0.5}).train()
    batch = batch_for(model)
    first, second = model.frontend.local_features(batch).x, model.frontend.local_features(batch).x
    torch.testing.assert_close(first, second)  # no dropout before the teacher reads the features
    targets = [model.teacher_targets(batch, model.frontend.local_features(batch)) for _ in range(2)]
    torch.testing.assert_close(targets[0], targets[1])


def test_health_statistics_are_logged() -> None:
    model = tiny_model("speech", 2, "tiny")
    logs = model(batch_for(model), generator=torch.Generator().manual_seed(0)).logs
    assert 0.0 < logs["rel_loss"] and 1.0 <= logs["target_rank"] <= 32 and 1.0 <= logs["pred_rank"] <= 32


def test_weight_decay_exemptions_follow_each_released_recipe() -> None:
    from d2v.train.optim import param_groups

    def decayed(model: Data2Vec) -> set[str]:
        ids = {id(p) for g in param_groups(model, 0.05, 1e-3) if g["weight_decay"] > 0 for p in g["params"]}
        return {n for n, p in model.named_parameters() if id(p) in ids}

    v2_image = decayed(tiny_model("image", 2, "tiny"))
    assert "frontend.cls_token" in v2_image  # fairseq decays the extra tokens
    assert "encoder.blocks.0.fc1.weight" in v2_image and "encoder.blocks.0.fc1.bias" not in v2_image
    assert not any("norm" in n for n in v2_image)
    v1_image = decayed(tiny_model("image", 1, "tiny"))
    assert "frontend.cls_token" not in v1_image and "encoder.blocks.0.fc1.weight" in v1_image
    v1_text = decayed(tiny_model("text", 1, "tiny"))
    assert "encoder.blocks.0.norm1.weight" in v1_text and "encoder.blocks.0.fc1.bias" in v1_text  # all decayed
    v2_speech = decayed(tiny_model("speech", 2, "tiny"))
    assert not any("alibi_scale" in n for n in v2_speech)
