"""Accumulators sum over ranks: two gloo processes on the CPU must give the single-process answer."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from captum_pags.manifold import LinearSubspace
from captum_pags.metrics import (
    AlignmentAccumulator,
    RobustnessAccumulator,
    TangentAlignmentAccumulator,
    manifold_robustness,
    score_alignment,
    tangent_alignment,
)


def _data():
    gen = torch.Generator().manual_seed(0)
    a, s, x = (torch.randn(10, 1, 6, 6, generator=gen) for _ in range(3))
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(3, 36, generator=gen))
        model[1].bias.zero_()
    space = LinearSubspace(torch.randn(4, 36, generator=gen), input_shape=(1, 6, 6))
    return a, s, x, model, space


def _rank_slices(rank):
    return [slice(0, 3), slice(3, 4)] if rank == 0 else [slice(4, 10)]


def _worker(rank, world, init_file, out_file):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        a, s, x, model, space = _data()
        score_acc, tangent_acc = AlignmentAccumulator(), TangentAlignmentAccumulator(space)
        robust_acc = RobustnessAccumulator(model, space, [0.1, 0.5], 3, seed=10)
        for sl in _rank_slices(rank):
            score_acc.update(a[sl], s[sl])
            tangent_acc.update(a[sl], x[sl])
            robust_acc.update(x[sl])
        results = (score_acc.compute(), tangent_acc.compute(), robust_acc.compute())
        if rank == 0:
            torch.save(
                {
                    "score": (results[0].mean, results[0].count),
                    "tangent": (results[1].mean, results[1].count),
                    "on": results[2].on,
                    "off": results[2].off,
                },
                out_file,
            )
    finally:
        dist.destroy_process_group()


def test_accumulators_sum_over_two_ranks(tmp_path):
    out_file = tmp_path / "out.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    got = torch.load(out_file, weights_only=True)
    a, s, x, model, space = _data()
    torch.testing.assert_close(got["score"][0], score_alignment(a, s).double().mean(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got["tangent"][0], tangent_alignment(a, x, space).double().mean(), rtol=1e-6, atol=1e-7)
    assert got["score"][1] == got["tangent"][1] == 10
    # update b on rank r of W=2 is seeded with seed + 2 b + r
    seeds = {(0, 0): 10, (0, 1): 12, (1, 0): 11}
    parts = [
        manifold_robustness(model, x[sl], space, [0.1, 0.5], 3, seed=seeds[(r, b)])
        for r in (0, 1)
        for b, sl in enumerate(_rank_slices(r))
    ]
    torch.testing.assert_close(got["on"], torch.cat([p.on for p in parts]).mean(0, keepdim=True))
    torch.testing.assert_close(got["off"], torch.cat([p.off for p in parts]).mean(0, keepdim=True))
