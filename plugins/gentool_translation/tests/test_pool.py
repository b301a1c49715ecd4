"""The image pool of past fakes: filling, swapping statistics, seeding, state round trip."""

import torch
from safetensors.torch import load, save

from gentool_translation.pool import ImagePool


def numbered(start: int, count: int) -> torch.Tensor:
    """``count`` 1x1 grey images whose value is their serial number."""
    return torch.arange(start, start + count, dtype=torch.float32).view(count, 1, 1, 1)


def test_pool_fills_then_swaps_half_the_time():
    torch.manual_seed(0)
    pool = ImagePool(50)
    first = numbered(0, 50)
    assert torch.equal(pool.query(first), first)  # until full, the new images come back
    assert len(pool) == 50

    trials, swapped = 4000, 0
    for step in range(trials):
        image = numbered(1000 + step, 1)
        out = pool.query(image)
        if out.item() != image.item():
            swapped += 1
            # A stored image came back and the new one took its place.
            assert out.item() < 1000 + step
            assert any(stored.item() == image.item() for stored in pool.images)
        assert len(pool) == 50
    # Binomial(4000, 0.5): the standard deviation of the rate is 0.008.
    assert abs(swapped / trials - 0.5) < 0.04


def test_pool_returns_stored_images_uniformly():
    torch.manual_seed(1)
    pool = ImagePool(4)
    pool.query(numbered(0, 4))
    returned = torch.zeros(4)
    for _ in range(4000):
        value = pool.query(numbered(100, 1)).item()
        if value < 4:
            returned[int(value)] += 1
        pool.images = [image for image in numbered(0, 4)]  # keep the originals stored
    assert (returned / returned.sum() - 0.25).abs().max() < 0.04


def test_pool_is_reproducible_with_a_seed():
    def run():
        torch.manual_seed(7)
        pool = ImagePool(5)
        return torch.cat([pool.query(numbered(10 * i, 3)) for i in range(20)])

    assert torch.equal(run(), run())


def test_pool_of_size_zero_passes_images_through():
    pool = ImagePool(0)
    images = torch.rand(3, 3, 4, 4, requires_grad=True)
    out = pool.query(images)
    assert torch.equal(out, images) and not out.requires_grad and len(pool) == 0


def test_pool_state_round_trips_through_safetensors():
    torch.manual_seed(2)
    pool = ImagePool(6)
    pool.query(torch.rand(4, 3, 8, 8))
    state = load(save(pool.state_dict()))  # tensors only, as the resume file needs
    assert state["images"].shape == (4, 3, 8, 8) and int(state["count"]) == 4

    restored = ImagePool(6)
    restored.load_state_dict(state)
    assert len(restored) == 4
    assert all(torch.equal(a, b) for a, b in zip(pool.images, restored.images, strict=True))
    # Both continue identically from the same generator state.
    generator_state = torch.get_rng_state()
    new = torch.rand(5, 3, 8, 8)
    expected = pool.query(new)
    torch.set_rng_state(generator_state)
    torch.rand(5, 3, 8, 8)
    assert torch.equal(restored.query(new), expected)


def test_empty_pool_state_round_trips():
    state = load(save(ImagePool(3).state_dict()))
    pool = ImagePool(3)
    pool.load_state_dict(state)
    assert len(pool) == 0
