"""The data order and noise of a step do not depend on how many processes or micro-batches share it."""

import pytest
import torch

from svd.diffusion.edm import DenoiserConfig
from svd.training.loop import ResumableBatches, StepRandom


class _Items(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def _steps(world: int, accumulation: int, batch: int, steps: int, n: int = 26, start: tuple[int, int] = (0, 0)):
    """Per step, the sample ids each (micro-batch, rank) takes, concatenated in global-batch order."""
    ranks = [
        ResumableBatches(
            _Items(n),
            batch,
            seed=3,
            rank=r,
            world=world,
            accumulation=accumulation,
            collate_fn=list,
            epoch=start[0],
            consumed=start[1],
        )
        for r in range(world)
    ]
    out = []
    for _ in range(steps):
        per_rank = [r.next_step() for r in ranks]
        out.append([i for micro in range(accumulation) for rank in range(world) for i in per_rank[rank][micro]])
    return out


def test_one_process_and_several_take_the_same_global_batches():
    single = _steps(world=1, accumulation=1, batch=4, steps=13)  # 26 items: 6 steps an epoch, then a new order
    assert _steps(world=2, accumulation=1, batch=2, steps=13) == single
    assert _steps(world=2, accumulation=2, batch=1, steps=13) == single
    assert _steps(world=1, accumulation=4, batch=1, steps=13) == single
    assert sorted(i for step in single[:6] for i in step) == sorted(set(i for step in single[:6] for i in step))


def test_a_position_saved_under_one_process_count_resumes_under_another():
    single = _steps(world=1, accumulation=1, batch=4, steps=10)
    assert _steps(world=2, accumulation=1, batch=2, steps=5, start=(0, 5)) == single[5:]
    assert _steps(world=2, accumulation=2, batch=1, steps=2, start=(1, 2)) == single[8:]


def test_no_full_global_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="no full global batch of 8"):
        ResumableBatches(_Items(7), 2, seed=0, world=2, accumulation=2)


@pytest.mark.parametrize("world,accumulation", [(2, 1), (1, 3), (2, 2)])
def test_step_random_hands_each_micro_batch_its_rows_of_one_global_draw(world, accumulation):
    batch = 3
    noise = DenoiserConfig(1.0, -1.2, 1.2)
    whole = StepRandom(7, 5, batch_size=batch * world * accumulation)
    want = (
        whole.rows(batch * world * accumulation, lambda k, g: noise.sample_sigmas(k, g)),
        whole.randn((batch * world * accumulation, 2, 3)),
        whole.rand(batch * world * accumulation),
    )
    parts = [[], [], []]
    for micro in range(accumulation):
        for rank in range(world):
            rng = StepRandom(7, 5, rank=rank, micro=micro, world=world, accumulation=accumulation, batch_size=batch)
            parts[0].append(rng.rows(batch, lambda k, g: noise.sample_sigmas(k, g)))
            parts[1].append(rng.randn((batch, 2, 3)))
            parts[2].append(rng.rand(batch))
    for got, expected in zip(parts, want):
        assert torch.equal(torch.cat(got), expected)


def test_step_random_on_one_process_draws_what_a_plain_generator_seeded_alike_draws():
    from svd.training.loop import derive_seed

    rng = StepRandom(7, 5, batch_size=4)
    g = torch.Generator().manual_seed(derive_seed(7, 5, 0))  # the loop's single generator before processes
    assert torch.equal(rng.randn((4, 3)), torch.randn((4, 3), generator=g))
    assert torch.equal(rng.rand(4), torch.rand(4, generator=g))
    assert rng.generator.initial_seed() == derive_seed(7, 5, 0)
    with pytest.raises(ValueError, match="overruns"):
        StepRandom(7, 5, rank=1, world=2, batch_size=2).randn((3, 1))
