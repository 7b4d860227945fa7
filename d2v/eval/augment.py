"""Image fine-tuning augmentation on batched tensors: random resized crop and horizontal flip.

Operates on a collated batch ("image" (B, C, H, W)) with the caller's seeded generator, so a run is
repeatable and the data readers need no augmentation-aware code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from d2v.core.types import Batch
from d2v.eval.config import ImageAugmentConfig

ASPECT_RATIOS = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop default range


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def random_resized_crop(image: Tensor, scale_min: float, generator: torch.Generator) -> Tensor:
    """(C, H, W) -> a random crop of area fraction [scale_min, 1] and aspect 3/4..4/3, resized back."""
    _, height, width = image.shape
    area = _uniform(generator, scale_min, 1.0) * height * width
    aspect = math.exp(_uniform(generator, math.log(ASPECT_RATIOS[0]), math.log(ASPECT_RATIOS[1])))
    crop_h = max(1, min(height, round(math.sqrt(area / aspect))))
    crop_w = max(1, min(width, round(math.sqrt(area * aspect))))
    top = int(torch.randint(0, height - crop_h + 1, (), generator=generator))
    left = int(torch.randint(0, width - crop_w + 1, (), generator=generator))
    crop = image[:, top : top + crop_h, left : left + crop_w].unsqueeze(0)  # (1, C, h, w)
    return F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)[0]


class ImageAugment:
    """The `augment` callable for d2v.eval.finetune.finetune."""

    def __init__(self, cfg: ImageAugmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        images = batch["image"]
        out = []
        for image in images:
            if self.cfg.random_resized_crop:
                image = random_resized_crop(image, self.cfg.crop_scale_min, generator)
            if self.cfg.hflip and torch.rand((), generator=generator).item() < 0.5:
                image = image.flip(-1)
            out.append(image)
        return {**batch, "image": torch.stack(out)}  # (B, C, H, W)
