"""The training loop's mixed precision: bfloat16 autocast, with float32 weight gradients where that is faster.

Under ``torch.autocast`` every convolution computes in bfloat16, its gradients included. On CPUs,
oneDNN's bfloat16 kernel for the weight gradient of a *transposed* convolution is 3-4 times
slower than its float32 kernel (course decoder, batch 128: 3.9 ms against 1.3 ms for the
64 -> 32 layer), and it is the largest single cost of a training step. So while ``fit``
trains on a CPU in bfloat16, a transposed convolution runs its forward pass and its input
gradient in bfloat16, as autocast would, and its weight and bias gradients in float32 from
the same bfloat16 tensors: the same model and arithmetic, with gradients summed in float32.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
_CONV_DEFAULTS = (None, None, None, 1, 0, 0, 1, 1)  # conv_transpose2d's defaults, in that order


def _pair(value: int | tuple[int, ...] | list[int]) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


class ConvTranspose2dFloat32WeightGrad(torch.autograd.Function):
    """``conv_transpose2d`` in bfloat16 whose weight and bias gradients are computed in float32.

    ``x: (B, C_in, H, W)``; ``weight: (C_in, C_out / groups, kH, kW)``. The output and the
    gradient of ``x`` are bfloat16, exactly as under autocast; the gradients of ``weight`` and
    ``bias`` are float32 (their dtype), computed from the bfloat16 inputs and output gradient.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, output_padding, groups, dilation):
        xb, wb = x.to(torch.bfloat16), weight.to(torch.bfloat16)
        bb = None if bias is None else bias.to(torch.bfloat16)
        ctx.save_for_backward(xb, wb)
        ctx.layout = (_pair(stride), _pair(padding), _pair(dilation), True, _pair(output_padding), groups)
        ctx.bias_shape, ctx.x_dtype = (None if bias is None else list(bias.shape)), x.dtype
        return torch.conv_transpose2d(xb, wb, bb, stride, padding, output_padding, groups, dilation)  # (B, C_out, H', W')

    @staticmethod
    def backward(ctx, grad):
        xb, wb = ctx.saved_tensors
        want_x, want_w, want_b = ctx.needs_input_grad[:3]
        want_b = want_b and ctx.bias_shape is not None
        grad_x = grad_w = grad_b = None
        if want_x:  # bfloat16, the kernel autocast uses
            grad_x = torch.ops.aten.convolution_backward(grad.to(torch.bfloat16), xb, wb, None, *ctx.layout,
                                                         [True, False, False])[0].to(ctx.x_dtype)
        if want_w or want_b:  # float32 from the same bfloat16 values
            grad32 = grad.float()
            if want_w:  # oneDNN's fast kernel for it
                grad_w = torch.ops.aten.convolution_backward(grad32, xb.float(), wb.float(), None, *ctx.layout,
                                                             [False, True, False])[1]
            if want_b:  # summed here: the kernel's own bias gradient takes longer than the weight gradient
                grad_b = grad32.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None, None


def _cpu_autocast_on() -> bool:
    """False inside a block that switched CPU autocast off (there the layer runs in float32 as asked)."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


class _Float32TransposedWeightGrads(TorchFunctionMode):
    """Routes ``conv_transpose2d`` calls that need gradients through ``ConvTranspose2dFloat32WeightGrad``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv_transpose2d and torch.is_grad_enabled() and _cpu_autocast_on():
            values = [args[i] if i < len(args) else kwargs.get(name, default)
                      for i, (name, default) in enumerate(zip(_CONV_ARGS, _CONV_DEFAULTS))]
            x, weight = values[0], values[1]
            if x.dim() == 4 and x.device.type == "cpu" and weight.requires_grad:
                return ConvTranspose2dFloat32WeightGrad.apply(*values)
        return func(*args, **kwargs)


_enabled = {"float32_transposed_weight_grads": True}


@contextlib.contextmanager
def autocast_only() -> Iterator[None]:
    """Within this block ``training_autocast`` leaves transposed convolutions to autocast's own kernels.

    ``bench throughput`` times ``fit`` both ways, side by side; nothing else needs it.
    """
    before = _enabled["float32_transposed_weight_grads"]
    _enabled["float32_transposed_weight_grads"] = False
    try:
        yield
    finally:
        _enabled["float32_transposed_weight_grads"] = before


def routes_transposed_convolutions(model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> bool:
    """Whether ``training_autocast`` computes some of ``model``'s weight and bias gradients in float32."""
    return (_enabled["float32_transposed_weight_grads"] and device.type == "cpu" and dtype == torch.bfloat16
            and any(isinstance(m, nn.ConvTranspose2d) for m in model.modules()))


def training_autocast(model: nn.Module, device: torch.device, dtype: torch.dtype | None
                      ) -> contextlib.AbstractContextManager:
    """The context ``fit`` runs each forward pass in: plain float32 when ``dtype`` is None, else autocast.

    On a CPU in bfloat16, a model with ``nn.ConvTranspose2d`` layers also gets their weight
    gradients in float32 (see the module docstring).
    """
    if dtype is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device.type, dtype=dtype))
    if routes_transposed_convolutions(model, device, dtype):
        stack.enter_context(_Float32TransposedWeightGrads())
    return stack
