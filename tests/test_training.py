import warnings

import pytest
import torch

from aecourse import models, training
from aecourse.data import binarize
from aecourse.losses import bce, gaussian_kl, mse
from aecourse.models import ConvAE, ConvVAE, DenseAE
from aecourse.training import (AEObjective, CheckpointError, History, VAEObjective, evaluate, fit,
                               load_checkpoint, load_or_train, save_checkpoint)

MAKERS = {
    "DenseAE": lambda: DenseAE(16),
    "NoBottleneckCAE": lambda: models.NoBottleneckCAE((8, 16)),
    "ConvAE": lambda: ConvAE(16, channels=(8, 16)),
    "ConvVAE": lambda: ConvVAE(8, channels=(8, 16)),
    "ConvVAE, conditional": lambda: ConvVAE(8, channels=(8, 16), n_classes=10),
    "DenoisingAE": lambda: ConvAE(16, channels=(8, 16)),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_smoke_every_model_learns_in_fast_mode(name, small_data, cfg):
    torch.manual_seed(0)
    model = MAKERS[name]()
    objective = AEObjective(noise=0.3) if name == "DenoisingAE" else training.default_objective(model)
    before = evaluate(model, small_data.test_x, small_data.test_y, objective)["loss"]
    history = fit(model, small_data, cfg, objective, epochs=3, batch_size=32, progress=False)
    assert len(history) == 3 and len(history.seconds) == 3
    assert history.test[-1]["loss"] < 0.95 * before  # held-out loss went down
    assert history.train[-1]["loss"] < history.train[0]["loss"]


def test_training_is_deterministic_under_a_seed(small_data, cfg):
    def run():
        torch.manual_seed(0)
        return fit(ConvVAE(4, channels=(8, 16)), small_data, cfg, epochs=2, progress=False)

    a, b = run(), run()
    assert a.train == b.train and a.test == b.test


def test_evaluate_is_the_mean_per_image_loss(small_data):
    torch.manual_seed(0)
    model = ConvAE(8, channels=(8, 16)).eval()
    with torch.no_grad():
        direct = mse(model(small_data.test_x), small_data.test_x, "batch_mean").item()
    assert evaluate(model, small_data.test_x, objective=AEObjective(), batch_size=100)["loss"] == pytest.approx(direct, rel=1e-5)
    assert model.training is False


def test_vae_objective_reports_its_parts(small_data):
    torch.manual_seed(0)
    model = ConvVAE(4, channels=(8, 16))
    terms = evaluate(model, small_data.test_x, objective=VAEObjective(beta=2.0))
    assert set(terms) == {"loss", "recon", "kl"}
    assert terms["loss"] == pytest.approx(terms["recon"] + 2.0 * terms["kl"], rel=1e-5)
    with torch.no_grad():
        mu, logvar = model.encode(small_data.test_x)
    assert terms["kl"] == pytest.approx(gaussian_kl(mu, logvar).mean().item(), rel=1e-4)


def test_checkpoint_round_trip_rebuilds_the_model_from_the_file_alone(tmp_path, small_data, cfg):
    torch.manual_seed(0)
    model = ConvVAE(3, channels=(8, 16))
    history = fit(model, small_data, cfg, epochs=1, progress=False)
    path = save_checkpoint(tmp_path / "vae.pt", model, history, meta={"note": "test"})
    loaded, loaded_history = load_checkpoint(path)  # uses weights_only=True
    assert isinstance(loaded, ConvVAE) and loaded.hparams == model.hparams
    assert torch.equal(loaded.reconstruct(small_data.test_x[:4]), model.reconstruct(small_data.test_x[:4]))
    assert loaded_history == history
    assert not list(tmp_path.glob("*.tmp"))


def test_unreadable_checkpoint_says_what_to_do(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="Delete it"):
        load_checkpoint(bad)
    torch.save({"format": 1, "model": "ConvAE", "hparams": {"latent_dim": 4}, "state_dict": {}}, bad)
    with pytest.raises(CheckpointError, match="state_dict|Missing"):
        load_checkpoint(bad)


def test_load_or_train_trains_once_then_loads(monkeypatch, small_data, cfg):
    make = MAKERS["ConvAE"]
    model, history = load_or_train("cae", make, small_data, cfg, epochs=1, progress=False)
    files = list(cfg.cache_dir.glob("cae-*.pt"))
    assert len(files) == 1 and len(history) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("should have loaded from the cache")

    monkeypatch.setattr(training, "fit", no_training)
    again, history2 = load_or_train("cae", make, small_data, cfg, epochs=1, progress=False)
    assert torch.equal(again(small_data.test_x[:3]), model(small_data.test_x[:3]))
    assert history2 == history


def test_cache_key_changes_with_what_decides_training(small_data, cfg):
    model = MAKERS["ConvAE"]()
    key = training.cache_key(model, small_data, cfg, AEObjective(), 3)
    assert key == training.cache_key(MAKERS["ConvAE"](), small_data, cfg, AEObjective(), 3)
    assert key != training.cache_key(model, small_data, cfg, AEObjective(), 4)
    assert key != training.cache_key(model, small_data, cfg, AEObjective(noise=0.5), 3)
    assert key != training.cache_key(ConvAE(17, channels=(8, 16)), small_data, cfg, AEObjective(), 3)
    cfg.precision = "fp32"
    fp32_key = training.cache_key(model, small_data, cfg, AEObjective(), 3)
    cfg.precision = "bf16"
    assert fp32_key != training.cache_key(model, small_data, cfg, AEObjective(), 3)


def test_cache_key_names_the_fused_adam_where_fit_uses_it(monkeypatch, small_data, cfg):
    model = MAKERS["ConvAE"]()
    fused = training.cache_key(model, small_data, cfg, AEObjective(), 3)
    monkeypatch.setattr(training, "FUSED_ADAM_DEVICES", ())  # a device without the fused kernel
    assert training.cache_key(model, small_data, cfg, AEObjective(), 3) != fused


def test_cache_key_names_the_lr_schedule_only_when_it_is_not_constant(small_data, cfg):
    model = MAKERS["ConvAE"]()
    constant = training.cache_key(model, small_data, cfg, AEObjective(), 3)
    cfg.lr_schedule = "cosine"
    assert training.cache_key(model, small_data, cfg, AEObjective(), 3) != constant


def test_cosine_schedule_follows_the_closed_form_step_by_step(small_data, cfg):
    import math

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    cfg.lr, cfg.lr_schedule = 2e-3, "cosine"
    used = []  # the learning rate of every optimiser step, read just before it
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    try:
        fit(MAKERS["DenseAE"](), small_data, cfg, epochs=3, batch_size=64, progress=False)
    finally:
        handle.remove()
    steps = 3 * math.ceil(len(small_data.train_x) / 64)
    expected = [2e-3 * (1 + math.cos(math.pi * t / steps)) / 2 for t in range(steps)]
    assert used == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert used[0] == 2e-3 and used[-1] < 2e-3 / 100  # from lr down to almost 0


def test_config_rejects_an_unknown_lr_schedule():
    from aecourse.config import Config

    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        Config(lr_schedule="step")


def test_corrupt_cache_is_moved_aside_and_retrained(small_data, cfg):
    make = MAKERS["ConvAE"]
    load_or_train("cae", make, small_data, cfg, epochs=1, progress=False)
    (path,) = cfg.cache_dir.glob("cae-*.pt")
    path.write_bytes(path.read_bytes()[:100])  # e.g. a kernel killed mid-write by an older version
    with pytest.warns(UserWarning, match="Moved it to .*corrupt"):
        model, history = load_or_train("cae", make, small_data, cfg, epochs=1, progress=False)
    assert len(history) == 1 and path.exists()
    assert path.with_name(path.name + ".corrupt").stat().st_size == 100  # nothing lost


def test_history_series():
    h = History(train=[{"loss": 3.0, "kl": 1.0}, {"loss": 2.0, "kl": 1.5}], test=[{"loss": 4.0}, {"loss": 3.5}])
    assert h.series("train", "kl") == [1.0, 1.5] and h.series("test") == [4.0, 3.5] and len(h) == 2


def test_fast_config_trains_few_epochs(small_data, tmp_path):
    from aecourse.config import Config

    cfg = Config(device="cpu", epochs=50, fast=True, cache_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = fit(MAKERS["DenseAE"](), small_data, cfg, progress=False)
    assert len(history) == cfg.epochs <= 2


@pytest.mark.parametrize("variational", [False, True])
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("bf16", 1e-3)])
def test_fit_follows_the_loss_trajectory_of_a_plain_loop(variational, precision, tolerance, small_data, cfg):
    """Speed never costs correctness: fit's per-epoch losses equal a textbook float32 loop's under one seed.

    In float32 they agree to rounding; with bfloat16 autocast (the default on CPUs with bf16
    instructions) every epoch stays within 0.1% of the float32 loop's loss.
    """
    import torch.nn.functional as F

    cfg.precision = precision
    make = (lambda: ConvVAE(8, channels=(8, 16))) if variational else (lambda: ConvAE(16, channels=(8, 16)))
    torch.manual_seed(0)
    course = make()
    torch.manual_seed(0)
    plain = make()
    assert all(torch.equal(a, b) for a, b in zip(course.parameters(), plain.parameters()))
    training_dtypes = set()  # what the convolutions computed in while training
    first_conv = next(m for m in course.modules() if isinstance(m, torch.nn.Conv2d))

    def record(module, inputs, out):
        if module.training:
            training_dtypes.add(out.dtype)

    first_conv.register_forward_hook(record)
    torch.manual_seed(1)  # the same draws of eps on both sides
    history = fit(course, small_data, cfg, epochs=3, batch_size=64, progress=False)

    optimizer = torch.optim.Adam(plain.parameters(), lr=cfg.lr)
    order_rng = torch.Generator().manual_seed(cfg.seed)  # fit shuffles with a generator seeded by cfg.seed
    x_all, n, trajectory = small_data.train_x, len(small_data.train_x), []
    torch.manual_seed(1)
    for _ in range(3):
        order, total = torch.randperm(n, generator=order_rng), 0.0
        for i in range(0, n, 64):
            x = x_all[order[i:i + 64]]
            if variational:
                x_hat, mu, logvar = plain(x)
                kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
                loss = (F.binary_cross_entropy(x_hat, x, reduction="sum") + kl) / len(x)
            else:
                loss = F.mse_loss(plain(x), x, reduction="sum") / len(x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
        trajectory.append(total / n)
        with torch.no_grad():  # held-out pass after each epoch, as fit does (it draws eps too)
            plain.eval(), plain(small_data.test_x), plain.train()
    assert history.series("train") == pytest.approx(trajectory, rel=tolerance)
    assert training_dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}


def test_train_step_is_one_plain_step_and_returns_the_loss_before_it(small_data):
    torch.manual_seed(0)
    model, x = DenseAE(8), small_data.train_x[:32]
    twin = DenseAE(8)
    twin.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = mse(model(x), x).item()
    assert training.train_step(model, optimizer, x) == pytest.approx(before, rel=1e-6)
    mse(twin(x), x).backward()  # the same step by hand
    with torch.no_grad():
        for p in twin.parameters():
            p -= 0.1 * p.grad
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)


def test_fit_with_step_trains_with_the_given_step_and_caps_the_epochs(small_data, cfg):
    calls = []

    def step(model, optimizer, x):
        calls.append(len(x))
        return training.train_step(model, optimizer, x)

    torch.manual_seed(0)
    model = DenseAE(8)
    before = evaluate(model, small_data.test_x, objective=AEObjective())["loss"]
    history = training.fit_with_step(model, small_data, step, cfg, epochs=cfg.epochs + 5)
    assert len(history) == cfg.epochs  # capped by cfg.epochs (fast mode's cap)
    assert sum(calls) == cfg.epochs * len(small_data.train_x)
    assert history.test[-1]["loss"] < before and not model.training
    assert len(training.fit_with_step(DenseAE(8), small_data, step, cfg, epochs=1)) == 1


def test_pieces_objective_with_the_reference_pieces_is_the_vae_objective(small_data):
    from aecourse import losses
    torch.manual_seed(0)
    model, x = ConvVAE(4, channels=(8, 16)), small_data.test_x[:64]
    pieces = training.PiecesVAEObjective(models.reparameterize, lambda *a: losses.vae_loss(*a).loss)
    torch.manual_seed(1)
    mine = pieces(model, x, None)["loss"]
    torch.manual_seed(1)
    reference = VAEObjective()(model, x, None)["loss"]
    torch.testing.assert_close(mine, reference)
    mine.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_history_first_keeps_the_first_epochs():
    history = History([{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.0}], [{"loss": 4.0}] * 3, [1.0, 1.0, 1.0])
    assert history.first(2).series("train") == [3.0, 2.0] and len(history.first(2).seconds) == 2
    assert len(history.first(10)) == 3


def test_recipe_fit_takes_another_model_objective_and_fewer_epochs(small_data, cfg):
    from aecourse import recipes
    made = []

    def make():
        made.append(models.Assembled(ConvAE(16, channels=(8, 16)).encoder, ConvAE(16, channels=(8, 16)).decoder))
        return made[-1]

    model, history = recipes.CAE.fit(small_data, cfg, make=make, epochs=1)
    assert model is made[0] and len(history) == 1
    _, history = recipes.CAE.fit(small_data, cfg, make=make, epochs=99)
    assert len(history) == recipes.CAE.config(cfg).epochs  # at most the recipe's (fast mode's) epochs
    seen = []
    objective = lambda m, x, y: seen.append(1) or AEObjective()(m, x, y)
    recipes.CAE.fit(small_data, cfg, make=make, objective=objective, epochs=1)
    assert seen


def test_kl_warm_up_weighs_the_kl_by_a_linear_ramp_and_reports_the_plain_elbo(small_data, cfg):
    objective = VAEObjective(beta=2.0, warmup=0.5)
    assert [objective.at_step(t, 8).beta for t in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert objective.at_step(1, 8).warmup == 0 and objective.evaluation == VAEObjective(beta=2.0)
    with pytest.raises(RuntimeError, match="at_step"):
        objective(ConvVAE(4, channels=(8, 16)), small_data.test_x[:4], None)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        VAEObjective(warmup=1.5)
    torch.manual_seed(0)
    model = ConvVAE(4, channels=(8, 16))
    history = fit(model, small_data, cfg, objective, epochs=2, progress=False)
    first = history.train[0]  # the weight rises from 0 to 2 over the first epoch (half the steps)
    assert first["recon"] < first["loss"] < first["recon"] + 2.0 * first["kl"]
    second = history.train[1]  # the full weight in the second epoch
    assert second["loss"] == pytest.approx(second["recon"] + 2.0 * second["kl"], rel=1e-4)
    test = history.test[-1]  # held out: the plain objective, beta 2
    assert test["loss"] == pytest.approx(test["recon"] + 2.0 * test["kl"], rel=1e-4)


def test_free_bits_changes_training_not_the_held_out_elbo(small_data, cfg):
    torch.manual_seed(0)
    model = ConvVAE(4, channels=(8, 16))
    objective = VAEObjective(free_bits=3.0)  # above every dimension's KL at the start: the KL costs a constant
    terms = objective(model, small_data.test_x[:50], None)
    assert terms["loss"].item() == pytest.approx(terms["recon"].item() + 4 * 3.0, rel=1e-5)
    held_out = evaluate(model, small_data.test_x, objective=objective)
    assert held_out["loss"] == pytest.approx(held_out["recon"] + held_out["kl"], rel=1e-5)
    with pytest.raises(ValueError, match=">= 0"):
        VAEObjective(free_bits=-1.0)


def test_objectives_name_new_options_only_when_set_so_old_cache_keys_hold():
    assert repr(AEObjective()) == "AEObjective(recon='mse', noise=0.0)"
    assert repr(AEObjective("bce", binarize=True)) == "AEObjective(recon='bce', noise=0.0, binarize=True)"
    assert repr(VAEObjective(binarize=True)) == "VAEObjective(beta=1.0, recon='bce', binarize=True)"
    assert repr(VAEObjective(warmup=0.5, free_bits=0.5)) == \
        "VAEObjective(beta=1.0, recon='bce', warmup=0.5, free_bits=0.5)"


def test_ae_objective_can_binarize_its_batches(small_data):
    torch.manual_seed(0)
    model = ConvAE(4, channels=(8, 16))
    x = small_data.test_x[:20]
    torch.manual_seed(1)
    got = AEObjective("bce", binarize=True)(model, x, None)["loss"]
    torch.manual_seed(1)
    binary = binarize(x)
    with torch.no_grad():
        assert got.item() == pytest.approx(bce(model(binary), binary).item(), rel=1e-5)


def test_a_step_budget_cuts_the_last_pass_short_and_keys_the_cache_only_then(small_data, cfg):
    per_pass = -(-len(small_data.train_x) // cfg.batch_size)
    torch.manual_seed(0)
    history = fit(ConvAE(4, channels=(8, 16)), small_data, cfg, AEObjective(), steps=per_pass + 3, progress=False)
    assert len(history) == 2 and len(history.test) == 2  # one whole pass, then 3 steps of the next
    torch.manual_seed(0)
    whole = fit(ConvAE(4, channels=(8, 16)), small_data, cfg, AEObjective(), epochs=1, progress=False)
    assert whole.train[0] == history.train[0]  # the same first pass
    model = ConvAE(4, channels=(8, 16))
    key = training.cache_key(model, small_data, cfg, AEObjective(), 2)
    assert training.cache_key(model, small_data, cfg, AEObjective(), 2, 2 * per_pass) == key  # whole passes
    assert training.cache_key(model, small_data, cfg, AEObjective(), 2, per_pass + 3) != key
    with pytest.raises(ValueError, match="at least one step"):
        fit(model, small_data, cfg, steps=0, progress=False)
