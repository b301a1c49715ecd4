"""Running a trained generator on images of any size: padding, cropping and its norm mode."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["pad_to_fit", "run_generator"]


def pad_to_fit(
    images: torch.Tensor, multiple: int, minimum: int = 1
) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """Pad ``[B, C, H, W]`` images so each side is a multiple of ``multiple`` and at least
    ``minimum``, and return the slices that crop the original back out.

    The padding is centred and mirrors the image (reflection), so the border the network
    sees looks like image content; where an image is too small to mirror that far, the edge
    pixels are repeated instead.
    """
    height, width = images.shape[-2:]
    target_h = max(minimum, math.ceil(height / multiple) * multiple)
    target_w = max(minimum, math.ceil(width / multiple) * multiple)
    top, left = (target_h - height) // 2, (target_w - width) // 2
    bottom, right = target_h - height - top, target_w - width - left
    crop = (slice(top, top + height), slice(left, left + width))
    if not (top or bottom or left or right):
        return images, crop
    mirrorable = max(top, bottom) < height and max(left, right) < width
    mode = "reflect" if mirrorable else "replicate"
    return F.pad(images, (left, right, top, bottom), mode=mode), crop


def _has_batch_norm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@contextlib.contextmanager
def _inference_mode(net: nn.Module, eval_mode: bool) -> Iterator[None]:
    """Put ``net`` in eval or train mode for inference and restore it afterwards, including
    batch-norm running statistics, which a train-mode forward would otherwise update."""
    was_training = net.training
    saved = None
    if not eval_mode:
        saved = {name: buffer.clone() for name, buffer in net.named_buffers()}
    net.train(not eval_mode)
    try:
        yield
    finally:
        net.train(was_training)
        if saved:
            for name, buffer in net.named_buffers():
                buffer.copy_(saved[name])


@torch.no_grad()
def run_generator(
    generator: nn.Module, images: torch.Tensor, eval_mode: bool = False
) -> torch.Tensor:
    """The generator's output for ``images`` in [-1, 1], at their own height and width.

    ``eval_mode`` False is the authors' test-time behaviour: batch norm normalises with the
    image's own statistics and dropout stays on. Each image then runs on its own, so the
    result does not depend on what else is in the batch. With ``eval_mode`` True batch norm
    uses its running statistics and the batch runs at once.
    """
    multiple = getattr(generator, "size_multiple", 1)
    minimum = getattr(generator, "min_size", 1)
    padded, (rows, cols) = pad_to_fit(images, multiple, minimum)
    with _inference_mode(generator, eval_mode):
        if eval_mode or not _has_batch_norm(generator):
            out = generator(padded)
        else:
            out = torch.cat([generator(image[None]) for image in padded])
    return out[..., rows, cols]
