import pytest
import torch
from torch import nn

from aecourse import models
from aecourse.models import ConvAE, ConvVAE, DenseAE, build_model, reparameterize

X = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3, 9])


def conditional_vae(latent_dim: int = 16, **options) -> ConvVAE:
    """A VAE conditioned on the 10 digit classes."""
    return ConvVAE(latent_dim, n_classes=10, **options)


def run(model, x=X):
    return model(x, Y[: len(x)]) if getattr(model, "n_classes", 0) else model(x)


@pytest.mark.parametrize("latent_dim", [2, 8, 32])
@pytest.mark.parametrize("cls", [DenseAE, ConvAE])
def test_autoencoders_compress_to_latent_dim_and_reconstruct_in_range(cls, latent_dim):
    model = cls(latent_dim=latent_dim)
    z = model.encode(X)
    assert z.shape == (5, latent_dim) and z.dtype == torch.float32
    x_hat = model(X)
    assert x_hat.shape == X.shape
    assert 0 <= x_hat.min() and x_hat.max() <= 1
    assert torch.allclose(model.decode(z), x_hat)


@pytest.mark.parametrize("upsample", ["transpose", "nearest"])
def test_conv_decoder_upsampling_choices(upsample):
    assert ConvAE(16, upsample=upsample)(X).shape == X.shape
    with pytest.raises(ValueError, match="upsample"):
        ConvAE(16, upsample="bicubic-ish")


def test_conv_encoder_output_size_arithmetic():
    features = models.conv_encoder((8, 16))(X)
    assert features.shape == (5, 16 * 7 * 7)  # 28 -> pool -> 14 -> pool -> 7


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_conv_encoder_computes_conv_activation_pool_exactly(activation, depth):
    """Oracle: the textbook order, each stage's activation before its pooling, with the same weights.

    The ReLU encoder pools first (the two commute); outputs and every gradient must match to the bit.
    """
    torch.manual_seed(0)
    encoder = models.conv_encoder((8, 16), activation, depth)
    act = {"relu": nn.ReLU, "silu": nn.SiLU}[activation]
    convs = [m for m in encoder if isinstance(m, nn.Conv2d)]
    textbook = nn.Sequential(*[layer for i, conv in enumerate(convs)
                               for layer in (conv, act(), *([nn.MaxPool2d(2)] if i % depth == depth - 1 else []))],
                             nn.Flatten())
    first = [type(m) for m in encoder[:depth * 2 + 1]]
    assert first[-2:] == ([nn.MaxPool2d, nn.ReLU] if activation == "relu" else [act, nn.MaxPool2d])
    x = (X - 0.5).requires_grad_()  # negative pixels too: whole pooling windows below zero
    results = []
    for model in (encoder, textbook):
        out = model(x)
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        results.append((out, *torch.autograd.grad(out, [x, *(c.weight for c in convs)], grad_out)))
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_deeper_vae_stacks_convolutions_at_each_resolution(activation, depth):
    model = ConvVAE(32, upsample="nearest", activation=activation, depth=depth)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # encoder: depth per resolution (2); decoder: (depth - 1) per resolution + 2 upsampling convs + the output conv
    assert len(convs) == 2 * depth + 2 * (depth - 1) + 3
    kind = {"relu": nn.ReLU, "silu": nn.SiLU}[activation]
    other = {"relu": nn.SiLU, "silu": nn.ReLU}[activation]
    # one after every convolution but the output one, and one after the decoder's first Linear
    assert sum(isinstance(m, kind) for m in model.modules()) == len(convs)
    assert not any(isinstance(m, other) for m in model.modules())
    x_hat, mu, logvar = model(X)
    assert x_hat.shape == X.shape and mu.shape == logvar.shape == (5, 32)
    assert 0 <= x_hat.min() and x_hat.max() <= 1


def test_vae_hparams_name_only_the_options_that_differ_from_the_defaults():
    assert ConvVAE(16).hparams == {"latent_dim": 16, "channels": (32, 64), "upsample": "transpose"}
    deep = ConvVAE(32, upsample="nearest", activation="silu", depth=2)
    assert deep.hparams == {"latent_dim": 32, "channels": (32, 64), "upsample": "nearest",
                            "activation": "silu", "depth": 2}
    twin = build_model("ConvVAE", **deep.hparams)
    twin.load_state_dict(deep.state_dict())  # same layers, same names
    assert torch.equal(twin.eval().reconstruct(X), deep.eval().reconstruct(X))


def test_vae_options_reject_what_they_cannot_build():
    with pytest.raises(ValueError, match="at least 1; got 0"):
        ConvVAE(16, depth=0)
    with pytest.raises(ValueError, match="activation must be one of 'relu', 'silu', got 'tanh'"):
        ConvVAE(16, activation="tanh")


@pytest.mark.parametrize("latent_dim", [2, 16])
@pytest.mark.parametrize("make", [ConvVAE, conditional_vae])
def test_vaes_return_reconstruction_mu_logvar(make, latent_dim):
    model = make(latent_dim=latent_dim)
    x_hat, mu, logvar = run(model)
    assert x_hat.shape == X.shape and mu.shape == logvar.shape == (5, latent_dim)
    assert 0 <= x_hat.min() and x_hat.max() <= 1
    samples = model.sample(7, y=torch.tensor(3) if make is conditional_vae else None)
    assert samples.shape == (7, 1, 28, 28)


def test_vae_forward_is_stochastic_but_reconstruct_is_not():
    model = ConvVAE(4)
    torch.manual_seed(0)
    assert not torch.equal(model(X)[0], model(X)[0])
    assert torch.equal(model.reconstruct(X), model.reconstruct(X))


def test_vae_sampling_repeats_with_a_generator():
    model = ConvVAE(2)
    a = model.sample(4, generator=torch.Generator().manual_seed(1))
    b = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_conditional_vae_needs_labels():
    with pytest.raises(ValueError, match="labels"):
        conditional_vae(4)(X)


def test_reparameterize_matches_the_formula_by_hand():
    mu = torch.tensor([[0.0, 1.0, -2.0]])
    logvar = torch.tensor([[0.0, 2 * torch.log(torch.tensor(3.0)).item(), -2.0]])  # sigma = 1, 3, e^-1
    eps = torch.tensor([[0.5, -1.0, 2.0]])
    expected = torch.tensor([[0.5, 1.0 - 3.0, -2.0 + 2.0 * torch.exp(torch.tensor(-1.0)).item()]])
    assert torch.allclose(reparameterize(mu, logvar, eps), expected)


def test_reparameterize_samples_have_the_right_mean_and_variance():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[1.5, -0.5]]), torch.tensor([[0.0, 1.0]])
    z = reparameterize(mu.expand(200_000, 2), logvar.expand(200_000, 2))
    assert torch.allclose(z.mean(0), mu[0], atol=0.02)
    assert torch.allclose(z.var(0), logvar[0].exp(), rtol=0.02)


def test_gradients_flow_through_the_reparameterization():
    mu = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(4, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda m, lv: reparameterize(m, lv, eps), (mu, logvar))
    reparameterize(mu, logvar, eps).sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))
    assert torch.allclose(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)
    with pytest.raises(ValueError, match="same shape"):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))


BUILDS = {name: (name, {}) for name in models.MODELS} | {"ConvVAE, conditional": ("ConvVAE", {"n_classes": 10})}


@pytest.mark.parametrize("build", list(BUILDS))
def test_every_parameter_gets_a_gradient(build):
    name, options = BUILDS[build]
    model = build_model(name, **options)
    out = run(model)
    (out[0] if isinstance(out, tuple) else out).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("build", list(BUILDS))
def test_models_rebuild_from_name_and_hparams(build):
    name, options = BUILDS[build]
    model = build_model(name, **options, **({} if name == "NoBottleneckCAE" else {"latent_dim": 6}))
    twin = build_model(name, **model.hparams)
    twin.load_state_dict(model.state_dict())
    model.eval(), twin.eval()
    if models.is_variational(model):
        a, b = (m.reconstruct(X, Y) if m.n_classes else m.reconstruct(X) for m in (model, twin))
    else:
        a, b = model(X), twin(X)
    assert torch.equal(a, b)


def test_same_seed_same_weights():
    torch.manual_seed(7)
    a = ConvVAE(8).state_dict()
    torch.manual_seed(7)
    b = ConvVAE(8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wrong_input_shape_gets_a_helpful_error():
    with pytest.raises(ValueError, match=r"view\(-1, 1, 28, 28\)"):
        ConvAE(8)(torch.rand(5, 784))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("Transformer")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_models_run_on_the_gpu():
    model = ConvVAE(8).cuda()
    x_hat, mu, _ = model(X.cuda())
    assert x_hat.device.type == "cuda" and mu.device.type == "cuda"
    assert model.sample(3).device.type == "cuda"


@pytest.mark.parametrize("size, kernel, stride, padding, dilation", [
    (28, 3, 1, 1, 1), (28, 3, 1, 0, 1), (28, 5, 2, 2, 1), (14, 2, 2, 0, 1), (7, 3, 2, 1, 2), (27, 4, 3, 1, 1)])
def test_conv_output_size_matches_real_layers(size, kernel, stride, padding, dilation):
    x = torch.zeros(1, 1, size, size)
    conv = torch.nn.Conv2d(1, 1, kernel, stride, padding, dilation)
    assert models.conv_output_size(size, kernel, stride, padding, dilation) == conv(x).shape[-1]
    if padding <= kernel // 2:
        pool = torch.nn.MaxPool2d(kernel, stride, padding, dilation)
        assert models.conv_output_size(size, kernel, stride, padding, dilation) == pool(x).shape[-1]


@pytest.mark.parametrize("size, kernel, stride, padding, output_padding", [
    (7, 3, 2, 1, 1), (7, 2, 2, 0, 0), (14, 4, 2, 1, 0), (5, 3, 3, 0, 2)])
def test_conv_transpose_output_size_matches_real_layers(size, kernel, stride, padding, output_padding):
    layer = torch.nn.ConvTranspose2d(1, 1, kernel, stride, padding, output_padding)
    expected = layer(torch.zeros(1, 1, size, size)).shape[-1]
    assert models.conv_transpose_output_size(size, kernel, stride, padding, output_padding) == expected


def test_code_size_counts_numbers_per_image():
    assert models.code_size(ConvAE(12).encoder) == 12
    assert models.code_size(models.NoBottleneckCAE().encoder) == 64 * 7 * 7  # more than the 784 pixels
    assert models.NoBottleneckCAE()(X).shape == X.shape
    assert models.code_size(nn.Flatten()) == 784  # a layer without weights (the lesson's first example)


def test_conditional_vae_takes_label_codes_as_well_as_labels():
    torch.manual_seed(0)
    model = ConvVAE(3, channels=(8, 16), n_classes=10).eval()
    z, y = torch.randn(4, 3), torch.tensor([0, 3, 3, 9])
    with torch.no_grad():
        torch.testing.assert_close(model.decode(z, torch.eye(10)[y]), model.decode(z, y))
        mixed = model.decode(z, 0.5 * torch.eye(10)[y] + 0.5 * torch.eye(10)[[1, 1, 2, 2]])
    assert mixed.shape == (4, 1, 28, 28)
    with pytest.raises(ValueError, match=r"label codes should have shape \(4, 10\)"):
        model.decode(z, torch.eye(10)[y][:, :9])


def test_assembled_joins_an_encoder_and_a_decoder():
    encoder, decoder = DenseAE(5).encoder, DenseAE(5).decoder
    model = models.Assembled(encoder, decoder)
    assert model.encode(X).shape == (len(X), 5) and model(X).shape == X.shape
    assert set(model.parameters()) == set(encoder.parameters()) | set(decoder.parameters())


def test_slim_encoder_squeezes_to_32_numbers_without_a_linear_layer():
    encoder = models.slim_encoder()
    assert encoder(X).shape == (len(X), 32)
    assert not any(isinstance(m, nn.Linear) for m in encoder.modules())
    assert models.count_parameters(encoder) == 5_378 <= 20_000
    assert models.code_size(encoder) == 32


def _nhwc(model: nn.Module) -> bool:
    """True when a convolution with several input channels has NHWC weights (the first one's are both)."""
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
    return conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()


@pytest.mark.parametrize("was_training", [True, False])
def test_evaluating_runs_nhwc_in_eval_mode_and_hands_back_nchw_and_the_mode(was_training):
    torch.manual_seed(0)
    model = ConvAE(8).train(was_training)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        model.eval()
        expected = model(x)  # NCHW weights: the reference
        model.train(was_training)
        with models.evaluating(model) as same:
            assert same is model and not model.training and _nhwc(model)
            got = model(x)
    assert model.training == was_training and not _nhwc(model)
    assert all(p.is_contiguous() for p in model.parameters())  # as a checkpoint loads: views of weights work
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)  # only the layout changed, not the results


def test_evaluating_leaves_a_model_already_in_that_layout_as_it_is():
    model = ConvVAE(4).to(memory_format=torch.channels_last)  # as inside training.fit
    with models.evaluating(model):
        assert _nhwc(model)
    assert _nhwc(model)  # still NHWC: the epochs after this evaluation train as before
    dense = DenseAE(4)
    with models.evaluating(dense):  # no 4-D weights: nothing to change
        pass
    assert dense.training


def test_evaluating_hands_back_the_layout_and_mode_when_the_pass_fails():
    model = ConvAE(8)
    with pytest.raises(RuntimeError, match="broken"):
        with models.evaluating(model):
            raise RuntimeError("broken")
    assert model.training and not _nhwc(model)
