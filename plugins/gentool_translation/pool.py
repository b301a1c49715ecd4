"""The image pool: a buffer of past generated images that the discriminators train on."""

from __future__ import annotations

import torch

__all__ = ["ImagePool"]


class ImagePool:
    """A buffer of up to ``size`` past fakes, so a discriminator sees the generator's history
    rather than only its latest output (which damps oscillation between G and D).

    Until the pool is full each new image is stored and returned as is. Once full, each new
    image is, with probability 1/2, swapped for a random stored one (the stored one is
    returned, the new one takes its place), and otherwise returned as is. The draws use
    torch's global generator, so a seeded run is reproducible and a resumed run continues it.

    References:
        Shrivastava et al., "Learning from Simulated and Unsupervised Images through
        Adversarial Training", CVPR 2017, https://arxiv.org/abs/1612.07828.

    Arguments:
        size: how many images to keep; 0 disables the pool (every query returns its input).

    Example:
        >>> pool = ImagePool(2)
        >>> pool.query(torch.ones(3, 1, 4, 4)).shape
        torch.Size([3, 1, 4, 4])
        >>> len(pool)
        2
    """

    def __init__(self, size: int = 50) -> None:
        if size < 0:
            raise ValueError("pool size must be >= 0")
        self.size = size
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Images for the discriminator: the batch ``[B, C, H, W]`` with some swapped for
        past ones. The result is detached from the generator's graph."""
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(()).item() < 0.5:
                index = int(torch.randint(self.size, ()).item())
                out.append(self.images[index].to(image.device))
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stored images as one ``[count, C, H, W]`` tensor and their count (tensors only,
        so the state can go in a safetensors file)."""
        stored = torch.stack(self.images) if self.images else torch.zeros(0)
        return {"images": stored, "count": torch.tensor(len(self.images), dtype=torch.int64)}

    def load_state_dict(
        self, state: dict[str, torch.Tensor], device: torch.device | str | None = None
    ) -> None:
        """Restore what :meth:`state_dict` returned (onto ``device`` when given)."""
        count = int(state["count"])
        stored = state["images"]
        if count > self.size:
            raise ValueError(
                f"pool state holds {count} images, more than the pool size {self.size}"
            )
        if count and stored.shape[0] != count:
            raise ValueError(f"pool state says {count} images but holds {stored.shape[0]}")
        if device is not None:
            stored = stored.to(device)
        self.images = [image.clone() for image in stored[:count]] if count else []
