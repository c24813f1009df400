import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aecourse.autocast import (ConvTranspose2dFloat32WeightGrad, autocast_only, routes_transposed_convolutions,
                               training_autocast)
from aecourse.models import ConvAE, ConvVAE, DenseAE, NoBottleneckCAE

CPU, BF16 = torch.device("cpu"), torch.bfloat16

LAYOUTS = [  # (C_in, C_out, kernel, stride, padding, output_padding, groups, dilation, H)
    (8, 4, 3, 2, 1, 1, 1, 1, 7),  # the course decoder's upsampling
    (8, 1, 2, 2, 0, 0, 1, 1, 5),  # the tutorial CAE's
    (6, 4, (3, 2), (2, 1), (1, 0), (1, 0), 2, 1, 6),  # uneven, grouped
    (4, 4, 3, 1, 2, 0, 1, 2, 5),  # dilated
]


def _case(layout, seed: int = 0):
    c_in, c_out, k, s, p, op, g, d, h = layout
    torch.manual_seed(seed)
    layer = nn.ConvTranspose2d(c_in, c_out, k, stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    x = torch.randn(3, c_in, h, h)
    return layer, x


def _grads(layer: nn.ConvTranspose2d, x: torch.Tensor, grad_out: torch.Tensor, mixed: bool):
    """Output and the gradients of x, weight, bias of ``layer(x)`` under bf16 autocast (with the mode or not)."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    with training_autocast(layer if mixed else nn.Identity(), CPU, BF16):
        out = layer(x)
    out.backward(grad_out.to(out.dtype))
    return out.detach(), x.grad, layer.weight.grad, layer.bias.grad


@pytest.mark.parametrize("layout", LAYOUTS)
def test_forward_and_input_gradient_are_exactly_autocasts(layout):
    layer, x = _case(layout)
    grad_out = torch.randn_like(layer(x))
    out, gx, _, _ = _grads(layer, x, grad_out, mixed=True)
    ref_out, ref_gx, _, _ = _grads(layer, x, grad_out, mixed=False)
    assert out.dtype == ref_out.dtype == BF16 and torch.equal(out, ref_out)
    assert gx.dtype == torch.float32 and torch.equal(gx, ref_gx)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_weight_and_bias_gradients_are_float32_sums_of_the_bfloat16_values(layout, memory_format):
    """Oracle: the float32 gradients of the same layer fed the bfloat16-rounded x, weight and output gradient.

    Also in the channels-last layout ``fit`` trains in.
    """
    layer, x = _case(layout)
    layer, x = layer.to(memory_format=memory_format), x.contiguous(memory_format=memory_format)
    grad_out = torch.randn_like(layer(x)).to(BF16)
    _, _, gw, gb = _grads(layer, x, grad_out, mixed=True)
    _, _, autocast_gw, _ = _grads(layer, x, grad_out, mixed=False)

    w = layer.weight.detach().to(BF16).float().requires_grad_()
    b = layer.bias.detach().to(BF16).float().requires_grad_()
    c_in, c_out, k, s, p, op, g, d, h = layout
    out = F.conv_transpose2d(x.to(BF16).float(), w, b, s, p, op, g, d)
    out.backward(grad_out.float())
    assert gw.dtype == gb.dtype == torch.float32
    torch.testing.assert_close(gw, w.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gb, b.grad, rtol=1e-5, atol=1e-5)
    # autocast's own weight gradient is rounded to bfloat16: further from the oracle
    assert (gw - w.grad).abs().max() < (autocast_gw - w.grad).abs().max()


def test_keyword_arguments_and_gradients_of_the_input_only():
    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 5, 5, requires_grad=True), torch.randn(4, 3, 3, 3)  # weight needs no gradient
    with training_autocast(ConvAE(4, channels=(4, 8)), CPU, BF16):
        out = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
        keyword = F.conv_transpose2d(input=x, weight=w.requires_grad_(), bias=None, stride=2, padding=1,
                                     output_padding=1)
    assert out.shape == keyword.shape == (2, 3, 10, 10)
    assert "Float32WeightGrad" not in out.grad_fn.name()  # nothing to speed up: autocast's own path
    assert "Float32WeightGrad" in keyword.grad_fn.name()
    keyword.float().sum().backward()
    assert x.grad.shape == x.shape and w.grad.dtype == torch.float32


def test_the_function_alone_without_a_bias_or_an_input_gradient():
    """Called directly, with no bias and only a weight gradient wanted."""
    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 3, 3), torch.randn(4, 2, 3, 3, requires_grad=True)
    out = ConvTranspose2dFloat32WeightGrad.apply(x, w, None, 2, 1, 1, 1, 1)
    assert out.shape == (2, 2, 6, 6) and out.dtype == BF16
    out.float().sum().backward()
    assert w.grad.dtype == torch.float32 and w.grad.shape == w.shape


@pytest.mark.parametrize("make, routed", [
    (lambda: ConvAE(4, channels=(4, 8)), True), (lambda: ConvVAE(4, channels=(4, 8)), True),
    (lambda: NoBottleneckCAE((4, 8)), True), (lambda: ConvVAE(4, channels=(4, 8), upsample="nearest"), False),
    (lambda: DenseAE(4, (16,)), False),
])
def test_training_autocast_routes_exactly_the_transposed_convolutions(make, routed):
    model = make().train()
    seen = []
    for module in model.modules():
        if isinstance(module, (nn.ConvTranspose2d, nn.Conv2d, nn.Linear)):  # named before in-place ReLUs act
            module.register_forward_hook(lambda m, i, out: seen.append((type(m), out.grad_fn.name())))
    with training_autocast(model, CPU, BF16):
        model(torch.rand(2, 1, 28, 28))
    transposed = [("Float32WeightGrad" in name) for kind, name in seen if kind is nn.ConvTranspose2d]
    assert transposed == ([True, True] if routed else [False] * len(transposed))
    assert not any("Float32WeightGrad" in name for kind, name in seen if kind is not nn.ConvTranspose2d)
    assert len(seen) >= 4
    assert torch._C._len_torch_function_stack() == 0  # nothing left active after the block


def test_no_mode_without_gradients_in_float32_or_off_the_cpu():
    model = ConvAE(4, channels=(4, 8))
    with torch.no_grad(), training_autocast(model, CPU, BF16):
        out = model(torch.rand(2, 1, 28, 28))
    assert out.grad_fn is None and out.dtype == BF16
    with training_autocast(model, CPU, None):
        assert not torch.is_autocast_enabled("cpu")
        assert model(torch.rand(2, 1, 28, 28)).dtype == torch.float32
    assert torch._C._len_torch_function_stack() == 0


def test_an_error_inside_the_block_leaves_nothing_active():
    with pytest.raises(ValueError, match="boom"):
        with training_autocast(ConvAE(4, channels=(4, 8)), CPU, BF16):
            raise ValueError("boom")
    assert torch._C._len_torch_function_stack() == 0 and not torch.is_autocast_enabled("cpu")


def test_autocast_only_switches_the_routing_off_for_its_block_and_back():
    model = ConvAE(4, channels=(4, 8))
    assert routes_transposed_convolutions(model, CPU, BF16)
    assert not routes_transposed_convolutions(model, CPU, None)
    assert not routes_transposed_convolutions(model, torch.device("cuda"), BF16)
    assert not routes_transposed_convolutions(DenseAE(4, (16,)), CPU, BF16)
    names = []
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            module.register_forward_hook(lambda m, i, out: names.append(out.grad_fn.name()))
    with pytest.raises(RuntimeError, match="inside"):
        with autocast_only():
            assert not routes_transposed_convolutions(model, CPU, BF16)
            with training_autocast(model, CPU, BF16):
                model.decoder(torch.randn(2, 4))
            raise RuntimeError("inside")
    assert routes_transposed_convolutions(model, CPU, BF16)
    with training_autocast(model, CPU, BF16):
        model.decoder(torch.randn(2, 4))
    assert ["Float32WeightGrad" in name for name in names] == [False, False, True, True]


def test_a_block_that_switches_autocast_off_keeps_its_float32_layer():
    layer, x = _case(LAYOUTS[0])
    with training_autocast(layer, CPU, BF16):
        with torch.autocast("cpu", enabled=False):
            out = layer(x)
        routed = layer(x)
    assert out.dtype == torch.float32 and "Float32WeightGrad" not in out.grad_fn.name()
    torch.testing.assert_close(out, F.conv_transpose2d(x, layer.weight, layer.bias, 2, 1, 1))
    assert routed.dtype == BF16 and "Float32WeightGrad" in routed.grad_fn.name()
