"""`fit` resumes across epoch boundaries with a milestone scheduler, refuses a mismatched resume before
touching anything, stops at non-finite losses, and leaves the caller's random generators alone."""

import importlib
import json
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from captum_pags.models import MLP
from captum_pags.training import NoiseConsistencyLoss, StandardLoss, fit, load_checkpoint


def _data(n=24, batch_size=6, shuffle=True):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = (x.flatten(1).sum(1) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


def _model(hidden=8):
    torch.manual_seed(3)
    return MLP(input_shape=(1, 4, 4), hidden=(hidden,), num_classes=4)


def _milestone_run(tmp=None, epochs=4, resume=False, loss=None, checkpoint_every=None, optimizer_cls=None):
    model = _model()
    optimizer = (optimizer_cls or torch.optim.SGD)(model.parameters(), lr=0.2)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1, 3], gamma=0.1)
    history = fit(
        model,
        loss or NoiseConsistencyLoss(lam=0.5, sigma=0.2),
        _data(),
        epochs=epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        checkpoint_dir=tmp,
        checkpoint_every=checkpoint_every,
        resume=resume,
        seed=11,
        quiet=True,
    )
    return model, optimizer, scheduler, history


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class _Crash(Exception):
    pass


def _crash_at(call):
    inner, calls = NoiseConsistencyLoss(lam=0.5, sigma=0.2), {"n": 0}

    def loss(model, x, y):
        calls["n"] += 1
        if calls["n"] == call:
            raise _Crash
        return inner(model, x, y)

    return loss


@pytest.mark.parametrize("crash_call", [6, 11])  # epoch 2 step 2 and epoch 3 step 3, both after milestone 1
def test_resume_across_an_epoch_boundary_with_a_milestone_scheduler(tmp_path, crash_call):
    reference, ref_opt, ref_sched, ref_history = _milestone_run(epochs=4)
    with pytest.raises(_Crash):
        _milestone_run(tmp_path, epochs=4, loss=_crash_at(crash_call), checkpoint_every=3)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["epoch"] >= 1 and state["scheduler"] is not None  # the scheduler has stepped before the crash
    resumed, opt, sched, history = _milestone_run(tmp_path, epochs=4, resume=True, checkpoint_every=3)
    torch.testing.assert_close(_flat(resumed), _flat(reference), rtol=0, atol=0)
    assert sched.last_epoch == ref_sched.last_epoch == 4
    assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"]) == pytest.approx(0.2 * 0.01)
    assert sched.get_last_lr() == pytest.approx(ref_sched.get_last_lr())
    assert history.epochs == ref_history.epochs


def test_a_resume_that_loses_the_scheduler_state_is_detected(tmp_path, monkeypatch):
    # the comparison above can fail: with the scheduler's state dropped on load, the weights differ
    fit_module = importlib.import_module("captum_pags.training.fit")

    reference, *_ = _milestone_run(epochs=4)
    _milestone_run(tmp_path, epochs=1)  # a fresh scheduler would then decay after epoch 2 instead of 3
    load_into = fit_module.load_into
    monkeypatch.setattr(fit_module, "load_into", lambda st, t, m, o, s: load_into(st, t, m, o, None))
    lost, _, sched, _ = _milestone_run(tmp_path, epochs=4, resume=True)
    assert sched.last_epoch != 4
    assert float((_flat(lost) - _flat(reference)).abs().max()) > 1e-3
    monkeypatch.undo()
    _milestone_run(tmp_path / "again", epochs=2)
    resumed, _, sched, _ = _milestone_run(tmp_path / "again", epochs=4, resume=True)
    assert type(sched.milestones).__name__ == "Counter"  # restored as the scheduler keeps it
    torch.testing.assert_close(_flat(resumed), _flat(reference), rtol=0, atol=0)


def _snapshot(model, optimizer):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [dict(g, params=None) for g in optimizer.param_groups],
        {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in s.items()} for k, s in optimizer.state.items()},
    )


def _assert_identical(model, optimizer, snap):
    weights, groups, state = snap
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert [dict(g, params=None) for g in optimizer.param_groups] == groups
    assert optimizer.state.keys() == state.keys()


def _trained_once(model, optimizer):
    x, y = _data().dataset.tensors
    optimizer.zero_grad()
    StandardLoss()(model, x, y).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("mismatch", ["model_shape", "optimizer_type", "scheduler_type", "scheduler_missing", "seed"])
def test_refused_resume_leaves_model_optimizer_and_scheduler_bit_identical(tmp_path, mismatch):
    _milestone_run(tmp_path, epochs=2, optimizer_cls=torch.optim.Adam)
    model = _model(hidden=9 if mismatch == "model_shape" else 8)
    optimizer = (torch.optim.SGD if mismatch == "optimizer_type" else torch.optim.Adam)(model.parameters(), lr=0.2)
    _trained_once(model, optimizer)  # non-trivial optimizer state that must survive
    if mismatch == "scheduler_type":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    elif mismatch == "scheduler_missing":
        scheduler = None
    else:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1, 3], gamma=0.1)
    snap = _snapshot(model, optimizer)
    sched_state = None if scheduler is None else scheduler.state_dict()
    match = {
        "model_shape": "match the model's parameters but `net.1.weight` is",
        "optimizer_type": "Expected `optimizer` to be a torch.optim.adam.Adam",
        "scheduler_type": "Expected `scheduler` to be a torch.optim.lr_scheduler.MultiStepLR",
        "scheduler_missing": None,
        "seed": r"match the checkpoint's seed \(11\) but got 12",
    }[mismatch]
    kwargs = dict(epochs=3, optimizer=optimizer, scheduler=scheduler, checkpoint_dir=tmp_path, resume=True, quiet=True)
    if mismatch == "scheduler_missing":
        # a checkpoint with a scheduler resumed without one is fine (the state is simply not used) ...
        fit(model, StandardLoss(), _data(), seed=11, **kwargs)
        return
    with pytest.raises(ValueError, match=match):
        fit(model, StandardLoss(), _data(), seed=12 if mismatch == "seed" else 11, **kwargs)
    _assert_identical(model, optimizer, snap)
    if scheduler is not None:
        assert scheduler.state_dict() == sched_state
    # load_checkpoint refuses the same way, before loading anything
    if mismatch != "seed":
        with pytest.raises(ValueError, match=match):
            load_checkpoint(tmp_path, model, optimizer, scheduler)
        _assert_identical(model, optimizer, snap)


def test_a_scheduler_resumed_from_a_checkpoint_without_one_is_refused_untouched(tmp_path):
    model = _model()
    fit(model, StandardLoss(), _data(), epochs=1, checkpoint_dir=tmp_path, quiet=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="Expected a scheduler state in the checkpoint"):
        fit(
            model,
            StandardLoss(),
            _data(),
            epochs=2,
            optimizer=optimizer,
            scheduler=scheduler,
            checkpoint_dir=tmp_path,
            resume=True,
            quiet=True,
        )
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------- non-finite training
def test_nan_loss_stops_at_the_first_step_naming_it(tmp_path):
    calls = {"n": 0}

    def loss(model, x, y):
        calls["n"] += 1
        value = StandardLoss()(model, x, y)
        return value * float("nan") if calls["n"] == 7 else value

    model = _model()
    with pytest.raises(
        FloatingPointError, match=r"finite training loss but got nan at epoch 2, step 3 of the epoch \(global step 7\)"
    ):
        fit(model, loss, _data(), epochs=3, checkpoint_dir=tmp_path, quiet=True)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())  # the NaN never reached the weights
    assert json.loads((tmp_path / "checkpoint.json").read_text())["global_step"] == 4  # last good epoch's end


def test_inf_loss_and_diverging_weights_are_errors():
    def inf_loss(model, x, y):
        return StandardLoss()(model, x, y) + float("inf")

    with pytest.raises(FloatingPointError, match="got inf at epoch 1, step 1"):
        fit(_model(), inf_loss, _data(), epochs=1, quiet=True)
    model = _model()
    huge = torch.optim.SGD(model.parameters(), lr=1e38)
    with pytest.raises(FloatingPointError, match="Expected finite weights after epoch 1|finite training loss"):
        fit(model, StandardLoss(), _data(), epochs=1, optimizer=huge, quiet=True)


def test_empty_loaders_and_loaders_without_a_batch_are_refused():
    empty = DataLoader(TensorDataset(torch.zeros(0, 1, 4, 4), torch.zeros(0, dtype=torch.long)), batch_size=4)
    model = _model()
    before = _flat(model)
    with pytest.raises(ValueError, match="Expected `train_loader` to hold at least one example"):
        fit(model, StandardLoss(), empty, epochs=1, quiet=True)
    small = DataLoader(_data().dataset, batch_size=100, drop_last=True)
    with pytest.raises(ValueError, match="Expected `train_loader` to yield at least one batch per epoch"):
        fit(model, StandardLoss(), small, epochs=1, quiet=True)
    assert torch.equal(_flat(model), before)


def test_float_labels_in_the_eval_loader_are_refused():
    x, y = _data().dataset.tensors
    floats = DataLoader(TensorDataset(x, y.double() + 0.5), batch_size=6)
    with pytest.raises(TypeError, match="Expected `eval_loader` to yield \\(N,\\) integer class labels"):
        fit(_model(), StandardLoss(), _data(), epochs=1, eval_loader=floats, quiet=True)


# ---------------------------------------------------------------------- global random state
@pytest.mark.parametrize("outer_seed", [0, 123])
def test_fit_leaves_the_callers_random_generators_as_they_were(tmp_path, outer_seed):
    models = [_model() for _ in range(3)]  # built first: the test's own model seeding is not fit's
    torch.manual_seed(outer_seed)
    random.seed(outer_seed)
    np.random.seed(outer_seed)  # noqa: NPY002
    torch.rand(3)  # a position inside the stream, not just a fresh seed
    before = (torch.initial_seed(), torch.get_rng_state().clone(), random.getstate(), np.random.get_state()[1].copy())  # noqa: NPY002
    fit(models[0], NoiseConsistencyLoss(0.5, 0.2), _data(), epochs=1, seed=99, checkpoint_dir=tmp_path, quiet=True)
    fit(
        models[1],
        NoiseConsistencyLoss(0.5, 0.2),
        _data(),
        epochs=2,
        seed=99,
        checkpoint_dir=tmp_path,
        resume=True,
        quiet=True,
    )
    assert torch.initial_seed() == before[0] == outer_seed
    assert torch.equal(torch.get_rng_state(), before[1])
    assert random.getstate() == before[2]
    assert np.array_equal(np.random.get_state()[1], before[3])  # noqa: NPY002
    # also after an error inside the loop
    with pytest.raises(_Crash):
        fit(models[2], _crash_at(2), _data(), epochs=1, seed=5, quiet=True)
    assert torch.initial_seed() == outer_seed and torch.equal(torch.get_rng_state(), before[1])


def test_seeded_runs_do_not_depend_on_the_callers_generator_state():
    runs = []
    for outer in (1, 2):
        torch.manual_seed(outer)
        model = _model()
        torch.manual_seed(outer)
        fit(model, NoiseConsistencyLoss(0.5, 0.2), _data(), epochs=1, seed=4, quiet=True)
        runs.append(_flat(model))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_attack_and_smoothing_never_reseed_the_global_generator():
    from captum_pags.training import PGD, SmoothedClassifier

    model = _model()
    x, y = _data().dataset.tensors
    torch.manual_seed(77)
    torch.rand(2)
    state = torch.get_rng_state().clone()
    # with their own generators, the global stream is not even advanced
    PGD(model, 0.3, steps=2).perturb(x, y, generator=torch.Generator().manual_seed(0))
    smoothed = SmoothedClassifier(model, sigma=0.2, num_classes=4)
    smoothed.certify(x[:3], n0=5, n=20, alpha=0.01, generator=torch.Generator().manual_seed(0))
    smoothed.predict(x[:3], n=20, alpha=0.01, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state) and torch.initial_seed() == 77
    # without, they draw from it (as documented) but never reseed it
    PGD(model, 0.3, steps=2)(x, y)
    smoothed.certify(x[:3], n0=5, n=20, alpha=0.01)
    assert torch.initial_seed() == 77


def test_a_resume_on_data_of_another_size_is_refused_naming_the_dataset_size(tmp_path):
    _milestone_run(tmp_path, epochs=2)
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1, 3], gamma=0.1)
    with pytest.raises(ValueError, match=r"match the checkpoint's dataset_size \(24\) but got 30"):
        fit(
            model,
            StandardLoss(),
            _data(n=30),
            epochs=3,
            optimizer=optimizer,
            scheduler=scheduler,
            seed=11,
            checkpoint_dir=tmp_path,
            resume=True,
            quiet=True,
        )
