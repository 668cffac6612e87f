import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from captum_pags.models import MLP
from captum_pags.training import FitHistory, NoiseConsistencyLoss, StandardLoss, fit, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_training_worker.py")


def _train_here(out: Path, **kwargs) -> None:
    """The worker's run in this process, single-threaded like the worker processes."""
    spec = importlib.util.spec_from_file_location("_training_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module.train(out, **kwargs)
    finally:
        torch.set_num_threads(threads)


def _worker(*args, **popen_kwargs) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **popen_kwargs,
    )


def _finish(proc: subprocess.Popen, timeout: float = 120) -> None:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out.decode()


def _assert_same_weights(a: Path, b: Path, atol: float = 0.0) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0.0, atol=atol, msg=k)


def _toy_data(n=48, batch_size=8, shuffle=True):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = (x.flatten(1).sum(1) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


def _toy_model():
    torch.manual_seed(3)
    return MLP(input_shape=(1, 4, 4), hidden=(8,), num_classes=4)


def _run(tmp=None, epochs=2, resume=False, loss=None, **kwargs):
    model = _toy_model()
    loader = _toy_data()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = fit(
        model,
        loss or NoiseConsistencyLoss(lam=0.5, sigma=0.2),
        loader,
        epochs=epochs,
        optimizer=optimizer,
        checkpoint_dir=tmp,
        resume=resume,
        seed=5,
        quiet=True,
        **kwargs,
    )
    return model, history


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path):
    marker = tmp_path / "blocked"
    ckpt = tmp_path / "ckpt"
    # checkpoints every 4 steps; the 7th loss call (mid-epoch 1 of 2) blocks until the signal
    victim = _worker(
        "--out", tmp_path / "never.safetensors", "--checkpoint-dir", ckpt, "--block-at", 7, "--marker", marker
    )
    _train_here(tmp_path / "reference.safetensors")  # uninterrupted, while the victim starts
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert victim.poll() is None, victim.communicate()[0].decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    state = json.loads((ckpt / "checkpoint.json").read_text())
    assert (state["epoch"], state["batch_in_epoch"], state["global_step"]) == (0, 4, 4)  # mid-epoch
    assert not (tmp_path / "never.safetensors").exists()

    _finish(_worker("--out", tmp_path / "resumed.safetensors", "--checkpoint-dir", ckpt, "--resume"))
    _assert_same_weights(tmp_path / "reference.safetensors", tmp_path / "resumed.safetensors")


@pytest.mark.slow
def test_two_ranks_on_gloo_match_one_process(tmp_path):
    # one process with batch 16 == two ranks with batch 8 each (same examples per step)
    store = tmp_path / "store"
    ranks = [
        _worker(
            "--out",
            tmp_path / "two.safetensors",
            "--batch-size",
            8,
            "--loss",
            "gradnorm",
            "--world-size",
            2,
            "--rank",
            r,
            "--store",
            store,
            "--checkpoint-dir",
            tmp_path / "ddp_ckpt",
        )
        for r in range(2)
    ]
    _train_here(tmp_path / "one.safetensors", batch_size=16, loss_name="gradnorm")
    for proc in ranks:
        _finish(proc)
    _assert_same_weights(tmp_path / "one.safetensors", tmp_path / "two.safetensors", atol=1e-5)
    # rank 0 wrote one checkpoint holding both ranks' random states
    state = json.loads((tmp_path / "ddp_ckpt" / "checkpoint.json").read_text())
    assert state["config"]["world_size"] == 2 and len(state["rng"]) == 2
    assert sorted(p.name for p in (tmp_path / "ddp_ckpt").iterdir()) == [
        "checkpoint-000000020.safetensors",
        "checkpoint.json",
    ]


def test_resume_after_a_crash_mid_epoch_matches_uninterrupted(tmp_path):
    reference, ref_history = _run(epochs=3)

    class Crash(Exception):
        pass

    calls = {"n": 0}
    inner = NoiseConsistencyLoss(lam=0.5, sigma=0.2)

    def crashing(model, x, y):
        calls["n"] += 1
        if calls["n"] == 10:  # epoch 2, step 4 of 6; last checkpoint after step 9
            raise Crash
        return inner(model, x, y)

    with pytest.raises(Crash):
        _run(tmp_path, epochs=3, loss=crashing, checkpoint_every=3)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 3)
    resumed, history = _run(tmp_path, epochs=3, resume=True, checkpoint_every=3)
    assert history.resumed_from == 9 and history.global_step == ref_history.global_step == 18
    for a, b in zip(reference.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert history.epochs == ref_history.epochs


def test_resume_extends_a_finished_run(tmp_path):
    reference, _ = _run(epochs=2)
    _run(tmp_path, epochs=1)
    resumed, history = _run(tmp_path, epochs=2, resume=True)
    assert [r["epoch"] for r in history.epochs] == [1, 2]
    for a, b in zip(reference.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # nothing left to do: a finished run resumes to itself
    again, history2 = _run(tmp_path, epochs=2, resume=True)
    assert history2.epochs == history.epochs
    for a, b in zip(again.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_files_are_safetensors_and_json(tmp_path):
    model, _ = _run(tmp_path, epochs=1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint-000000006.safetensors", "checkpoint.json"]  # no temporary files left
    tensors = load_file(str(tmp_path / names[0]))
    torch.testing.assert_close(tensors["model.net.1.weight"], model.net[1].weight.detach())
    assert any(k.startswith("optimizer.state.") and k.endswith(".exp_avg") for k in tensors)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert isinstance(state["rng"][0]["torch"], list)
    fresh = _toy_model()
    loaded = load_checkpoint(tmp_path, fresh)
    assert loaded["global_step"] == 6
    for a, b in zip(model.parameters(), fresh.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("truncate_weights", "to have .* bytes but it has .*: it is truncated or corrupt"),
        ("flip_byte", "SHA-256 but it is corrupt"),
        ("truncate_state", "truncated or corrupt"),
        ("delete_weights", "is missing"),
    ],
)
def test_damaged_checkpoint_gives_a_clear_error(tmp_path, damage, match):
    _run(tmp_path, epochs=1)
    weights = next(tmp_path.glob("checkpoint-*.safetensors"))
    state = tmp_path / "checkpoint.json"
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "flip_byte":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate_state":
        state.write_text(state.read_text()[:50])
    else:
        weights.unlink()
    with pytest.raises(ValueError, match=match):
        _run(tmp_path, epochs=2, resume=True)


def test_history_records_training_and_evaluation():
    model = _toy_model().eval()
    loader = _toy_data()
    modes = []
    model.register_forward_pre_hook(lambda m, inp: modes.append(m.training))
    history = fit(model, StandardLoss(), loader, epochs=3, eval_loader=_toy_data(shuffle=False), quiet=True, seed=1)
    assert not model.training and all(p.grad is None for p in model.parameters())  # left as it came in
    assert modes[:6] == [True] * 6 and modes[6] is False  # trained in train mode, evaluated in eval mode
    assert isinstance(history, FitHistory) and history.global_step == 18
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3]
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    # evaluation equals a direct computation
    with torch.no_grad():
        x, y = loader.dataset.tensors
        logits = model(x)
        acc = (logits.argmax(1) == y).double().mean().item()
        ce = torch.nn.functional.cross_entropy(logits.double(), y).item()
    assert history.epochs[-1]["eval_accuracy"] == pytest.approx(acc)
    assert history.epochs[-1]["eval_loss"] == pytest.approx(ce, rel=1e-5)


def test_data_order_is_seeded_and_torch_losses_are_accepted():
    runs = []
    for seed in (0, 0, 1):
        model = _toy_model()
        fit(model, torch.nn.CrossEntropyLoss(), _toy_data(), epochs=1, seed=seed, quiet=True)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert not torch.allclose(runs[0], runs[2])


def test_fit_bad_input(tmp_path):
    model, loader = _toy_model(), _toy_data()
    loss = StandardLoss()
    with pytest.raises(ValueError, match="Expected `epochs` to be >= 1 but got 0"):
        fit(model, loss, loader, epochs=0)
    with pytest.raises(ValueError, match="Expected `checkpoint_dir` when `resume=True`"):
        fit(model, loss, loader, epochs=1, resume=True)
    with pytest.raises(ValueError, match="Expected `checkpoint_every` to be >= 1"):
        fit(model, loss, loader, epochs=1, checkpoint_every=0)
    with pytest.raises(TypeError, match="Expected `train_loader` to be a torch DataLoader"):
        fit(model, loss, [(torch.zeros(1, 16), torch.zeros(1))], epochs=1)
    with pytest.raises(TypeError, match="Expected `loss` to be callable"):
        fit(model, "ce", loader, epochs=1)
    weighted = DataLoader(loader.dataset, batch_size=8, sampler=WeightedRandomSampler(torch.ones(48), 48))
    with pytest.raises(ValueError, match="Expected `train_loader` built with `shuffle=True` or `shuffle=False`"):
        fit(model, loss, weighted, epochs=1)
    _run(tmp_path, epochs=1)
    with pytest.raises(ValueError, match=r"match the checkpoint's seed \(5\) but got 6"):
        fit(_toy_model(), loss, _toy_data(), epochs=2, checkpoint_dir=tmp_path, resume=True, seed=6, quiet=True)
    with pytest.raises(ValueError, match="match the model's parameters"):
        load_checkpoint(tmp_path, MLP(input_shape=(1, 4, 4), hidden=(9,), num_classes=4))
    with pytest.raises(FileNotFoundError, match="Expected a checkpoint in"):
        load_checkpoint(tmp_path / "nothing", _toy_model())


def test_the_default_evaluation_is_exact_in_float64_and_works_without_parameters():
    from torch.utils.data import DataLoader, TensorDataset

    from captum_pags.training.fit import _evaluate_classifier

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g)
    model = torch.nn.Linear(4, 3).double()
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    got = _evaluate_classifier(model, loader)
    with torch.no_grad():
        logits = model(x)
    expected_loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum").item() / 10
    assert got["eval_loss"] == pytest.approx(expected_loss, rel=1e-13)
    assert got["eval_accuracy"] == (logits.argmax(1) == y).sum().item() / 10
    fixed = torch.nn.Flatten()  # no parameters: evaluated on the CPU
    assert _evaluate_classifier(fixed, DataLoader(TensorDataset(x[:, :3], y), batch_size=4))["eval_accuracy"] == (
        (x[:, :3].argmax(1) == y).sum().item() / 10
    )
    with pytest.raises(TypeError, match=r"Expected `eval_loader` to yield \(N,\) integer class labels"):
        _evaluate_classifier(model, DataLoader(TensorDataset(x, y[:, None]), batch_size=3))


def test_the_epoch_record_is_the_exact_mean_of_the_batch_losses_and_is_printed(capsys):
    from torch.utils.data import DataLoader, TensorDataset

    from captum_pags.training import StandardLoss, fit

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    seen = []

    class Recording(StandardLoss):
        def forward(self, model, inputs, targets):
            value = super().forward(model, inputs, targets)
            seen.append(float(value.detach()))
            return value

    history = fit(model, Recording(), DataLoader(TensorDataset(x, y), batch_size=3), epochs=2, seed=0, quiet=False)
    assert len(seen) == 8  # 4 batches per epoch
    for epoch, record in enumerate(history.epochs):
        assert record["train_loss"] == pytest.approx(sum(seen[4 * epoch : 4 * epoch + 4]) / 4, rel=1e-13)
    printed = capsys.readouterr()
    assert "epoch 2/2" in printed.err  # the progress bar
    out = printed.out  # one line per epoch, through tqdm.write
    assert out.count("train_loss=") == 2 and f"train_loss={history.epochs[1]['train_loss']:.4g}" in out
