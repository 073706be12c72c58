"""Plain-PyTorch building blocks shared by the SynDiff networks.

FIR up/down-sampling (the ``upfirdn2d`` of StyleGAN2 / NCSN++ without its CUDA extension), the NCSN++ variance
scaling initialisation, sinusoidal time embeddings, the pixel norm of the latent mapping network, and group-norm
helpers. Everything here is written with ``torch.nn.functional`` only, so it runs unchanged on CPU and CUDA.
"""

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FIR_KERNEL = (1, 3, 3, 1)


# ---------------------------------------------------------------------------------------------------------------
# initialisation
# ---------------------------------------------------------------------------------------------------------------
def variance_scaling_(tensor, scale=1.0):
    """Fill ``tensor`` in place as NCSN++'s ``default_init``: uniform variance scaling with ``fan_avg``.

    Parameters
    ----------
    tensor : torch.Tensor
        Weight of shape ``(out, in, *kernel)`` (conv) or ``(out, in)`` (linear).
    scale : float
        Variance scale; ``0`` means ``1e-10`` (the near-zero init NCSN++ uses for the last conv of a block).

    Returns
    -------
    torch.Tensor
        ``tensor``, filled.
    """
    scale = 1e-10 if scale == 0 else scale
    shape = tensor.shape
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan_avg = (shape[0] + shape[1]) * receptive / 2.0
    bound = math.sqrt(3.0 * scale / fan_avg)
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


def conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=None, bias=True, init_scale=1.0):
    """``nn.Conv2d`` initialised as NCSN++ (variance scaling, zero bias); 'same' padding by default."""
    padding = kernel_size // 2 if padding is None else padding
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=bias)
    variance_scaling_(conv.weight, init_scale)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def dense(in_features, out_features, init_scale=1.0):
    """``nn.Linear`` initialised as NCSN++ (variance scaling, zero bias)."""
    linear = nn.Linear(in_features, out_features)
    variance_scaling_(linear.weight, init_scale)
    nn.init.zeros_(linear.bias)
    return linear


# ---------------------------------------------------------------------------------------------------------------
# FIR resampling (upfirdn2d in plain torch)
# ---------------------------------------------------------------------------------------------------------------
def fir_kernel_2d(kernel=FIR_KERNEL, gain=1.0):
    """Separable 2-D FIR kernel ``outer(k, k)``, normalised to sum ``gain``.

    Parameters
    ----------
    kernel : sequence of float
        1-D taps, e.g. ``(1, 3, 3, 1)``.
    gain : float
        Sum of the returned kernel (``factor ** 2`` for up-sampling keeps the mean intensity).

    Returns
    -------
    torch.Tensor
        float32 ``(K, K)``.
    """
    k = torch.as_tensor(kernel, dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 * (gain / k2.sum())


def _depthwise(kernel_2d, x):
    """Kernel ``(K, K)`` repeated as a depthwise weight ``(C, 1, K, K)`` for ``x`` (dtype and device of ``x``)."""
    c = x.shape[1]
    return kernel_2d.to(device=x.device, dtype=x.dtype).expand(c, 1, *kernel_2d.shape).contiguous()


@functools.lru_cache(maxsize=128)
def _fir_weight(kernel, gain, channels, device, dtype):
    """Cached depthwise FIR weight ``(channels, 1, K, K)`` (no host-to-device copy per call on CUDA)."""
    k = fir_kernel_2d(kernel, gain)
    return k.to(device=device, dtype=dtype).expand(channels, 1, *k.shape).contiguous()


def upfirdn2d(x, kernel_2d, up=1, down=1, pad=(0, 0)):
    """Up-sample by zero insertion, pad, FIR filter and down-sample (StyleGAN2's ``upfirdn2d``), plain torch.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)``.
    kernel_2d : torch.Tensor
        Symmetric ``(K, K)`` kernel (from :func:`fir_kernel_2d`).
    up, down : int
        Integer factors, the same on both axes.
    pad : tuple of int
        ``(before, after)`` zero padding on both axes, applied after the up-sampling.

    Returns
    -------
    torch.Tensor
        ``(B, C, (H * up + pad[0] + pad[1] - K) // down + 1, ...)``.
    """
    b, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(b, c, h, up, w, up)
        y[:, :, :, 0, :, 0] = x
        x = y.reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    # the kernels used here are symmetric, so correlation (conv2d) equals convolution
    return F.conv2d(x, _depthwise(kernel_2d, x), stride=down, groups=c)


def upsample_2d(x, kernel=FIR_KERNEL, factor=2):
    """FIR up-sampling by ``factor`` (NCSN++ ``upsample_2d``): ``(B, C, H, W)`` -> ``(B, C, H*f, W*f)``.

    Implemented as a depthwise transposed convolution, which equals zero insertion + ``(p+1)//2+f-1, p//2``
    padding + FIR filtering with ``p = K - f`` (see :func:`upfirdn2d`), without materialising the zeros.
    """
    taps = len(kernel)
    p = taps - factor
    before = (p + 1) // 2 + factor - 1
    after = p // 2 + factor - 1  # zero insertion leaves factor - 1 zeros after the last sample
    padding = taps - 1 - before
    if before != after or padding < 0:
        return upfirdn2d(x, fir_kernel_2d(kernel, gain=factor ** 2), up=factor, pad=(before, p // 2))
    weight = _fir_weight(tuple(kernel), float(factor ** 2), x.shape[1], x.device, x.dtype)
    return F.conv_transpose2d(x, weight, stride=factor, padding=padding, groups=x.shape[1])


def downsample_2d(x, kernel=FIR_KERNEL, factor=2):
    """FIR down-sampling by ``factor`` (NCSN++ ``downsample_2d``): ``(B, C, H, W)`` -> ``(B, C, H/f, W/f)``."""
    p = len(kernel) - factor
    x = F.pad(x, ((p + 1) // 2, p // 2, (p + 1) // 2, p // 2))
    weight = _fir_weight(tuple(kernel), 1.0, x.shape[1], x.device, x.dtype)
    return F.conv2d(x, weight, stride=factor, groups=x.shape[1])


def resample_2d(x, up=False, down=False, fir=True, kernel=FIR_KERNEL):
    """Up- or down-sample by 2: FIR (:func:`upsample_2d`, :func:`downsample_2d`) or, with ``fir=False``,
    nearest-neighbour up-sampling / 2x2 average pooling (NCSN++ ``naive_upsample_2d`` / ``naive_downsample_2d``).
    Returns ``x`` unchanged when neither ``up`` nor ``down``."""
    if up:
        return upsample_2d(x, kernel) if fir else F.interpolate(x, scale_factor=2, mode="nearest")
    if down:
        return downsample_2d(x, kernel) if fir else F.avg_pool2d(x, 2)
    return x


class DownsampleConv(nn.Module):
    """Stride-2 3x3 convolution, after a FIR blur when ``fir`` (NCSN++ ``Downsample(with_conv=True)``).

    Parameters
    ----------
    in_ch, out_ch : int
        Channels.
    fir : bool
        Blur with ``kernel`` first (the reference); otherwise pad right/bottom by one as NCSN++ does.
    kernel : sequence of float
        FIR taps.
    """

    def __init__(self, in_ch, out_ch, fir=True, kernel=FIR_KERNEL):
        super().__init__()
        self.conv = conv2d(in_ch, out_ch, 3, stride=2, padding=0)
        self.fir = fir
        self.register_buffer("kernel", fir_kernel_2d(kernel), persistent=False)

    def forward(self, x):
        """``(B, in_ch, H, W)`` -> ``(B, out_ch, H/2, W/2)``."""
        if self.fir:
            p = (self.kernel.shape[0] - 2) + (3 - 1)
            x = upfirdn2d(x, self.kernel, pad=((p + 1) // 2, p // 2))
        else:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


# ---------------------------------------------------------------------------------------------------------------
# embeddings and normalisation
# ---------------------------------------------------------------------------------------------------------------
def timestep_embedding(t, dim, max_positions=10000):
    """Sinusoidal embedding of (integer or real) time steps, as DDPM / NCSN++ ``get_timestep_embedding``.

    Parameters
    ----------
    t : torch.Tensor
        ``(B,)`` time steps (the discrete step index in SynDiff).
    dim : int
        Embedding size.
    max_positions : int
        Longest period.

    Returns
    -------
    torch.Tensor
        float32 ``(B, dim)``: ``[sin(t w_k), cos(t w_k)]``.
    """
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device)
                     * (-math.log(max_positions) / max(half - 1, 1)))
    arg = t.float()[:, None] * freq[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit mean square (StyleGAN's pixel norm of ``z``)."""

    def forward(self, z):
        """``(B, nz)`` -> ``(B, nz)``."""
        return z * torch.rsqrt(torch.mean(z * z, dim=1, keepdim=True) + 1e-8)


def num_groups(channels, max_groups=32):
    """Group count for group norm: NCSN++'s ``min(channels // 4, 32)``, lowered until it divides ``channels``."""
    g = max(1, min(channels // 4, max_groups))
    while channels % g:
        g -= 1
    return g


class AdaptiveGroupNorm(nn.Module):
    """Group norm without affine parameters, then a per-channel scale and shift predicted from the latent code.

    Parameters
    ----------
    channels : int
        Feature channels.
    style_dim : int
        Size of the mapped latent code.
    """

    def __init__(self, channels, style_dim):
        super().__init__()
        self.groups = num_groups(channels)
        self.eps = 1e-6
        self.style = dense(style_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias[:channels] = 1.0
            self.style.bias[channels:] = 0.0

    def forward(self, x, style):
        """Normalise ``x`` ``(B, C, H, W)`` and modulate it with ``style`` ``(B, style_dim)``.

        Normalisation and modulation are folded into one per-channel affine map ``x * a + b`` (one pass over
        ``x`` after the statistics), which matters for the thin, memory-bound CPU networks.
        """
        b, c = x.shape[:2]
        gamma, beta = self.style(style).chunk(2, dim=1)
        xf = x.float()
        mean_c = xf.mean(dim=(2, 3))  # per-channel moments (B, C); vector_norm is a fast single-pass reduction
        msq_c = torch.linalg.vector_norm(xf, dim=(2, 3)).square() / (x.shape[2] * x.shape[3])
        mean_g = mean_c.reshape(b, self.groups, -1).mean(dim=2, keepdim=True)
        var_g = msq_c.reshape(b, self.groups, -1).mean(dim=2, keepdim=True) - mean_g.square()
        rstd = torch.rsqrt(var_g.clamp_min(0) + self.eps).expand(b, self.groups, c // self.groups).reshape(b, c)
        scale = gamma * rstd.to(gamma.dtype)
        shift = beta - mean_g.expand(b, self.groups, c // self.groups).reshape(b, c).to(gamma.dtype) * scale
        return torch.addcmul(shift[:, :, None, None], x, scale[:, :, None, None])
