"""Diffusive generator of SynDiff: NCSN++ U-Net with adaptive group norm and a latent mapping network.

Follows ``ncsnpp_generator_adagn.py`` of denoising-diffusion-GAN as SynDiff configures it (BigGAN residual blocks
with FIR resampling, ``progressive_input='residual'``, no output skip, positional time embedding, skip rescale,
tanh output), written in plain PyTorch. Two changes: the levels that carry attention are chosen from the training
``image_size`` when the network is built, so a tile of another size (any multiple of ``size_multiple``) runs the
same layers; and an optional space-to-depth ``patch_size`` (1 = the reference network) runs the U-Net on pixel
blocks, which the compact CPU preset needs for speed.
"""

import math

import torch
from torch import nn

from ads_synth.translation.layers import (
    AdaptiveGroupNorm,
    DownsampleConv,
    PixelNorm,
    conv2d,
    dense,
    num_groups,
    resample_2d,
    timestep_embedding,
)

_SQRT2 = math.sqrt(2.0)


class ResBlockAdaGN(nn.Module):
    """BigGAN residual block with adaptive group norm, time bias and optional FIR up/down-sampling.

    Parameters
    ----------
    in_ch, out_ch : int
        Channels.
    temb_dim, zemb_dim : int
        Widths of the time embedding and of the mapped latent code.
    up, down : bool
        Up- or down-sample by 2 (both branches).
    dropout : float
        Dropout before the second conv.
    fir : bool
        FIR resampling (else nearest / average pooling).
    fir_kernel : tuple of int
        FIR taps.
    skip_rescale : bool
        Return ``(x + h) / sqrt(2)`` instead of ``x + h``.
    init_scale : float
        Variance scale of the second conv.
    """

    def __init__(self, in_ch, out_ch, temb_dim, zemb_dim, up=False, down=False, dropout=0.0,
                 fir=True, fir_kernel=(1, 3, 3, 1), skip_rescale=True, init_scale=0.0):
        super().__init__()
        self.norm0 = AdaptiveGroupNorm(in_ch, zemb_dim)
        self.conv0 = conv2d(in_ch, out_ch, 3)
        self.temb = dense(temb_dim, out_ch)
        self.norm1 = AdaptiveGroupNorm(out_ch, zemb_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = conv2d(out_ch, out_ch, 3, init_scale=init_scale)
        self.skip = conv2d(in_ch, out_ch, 1, padding=0) if (in_ch != out_ch or up or down) else None
        self.up, self.down = up, down
        self.fir, self.fir_kernel = fir, tuple(fir_kernel)
        self.skip_rescale = skip_rescale
        self.act = nn.SiLU()

    def forward(self, x, temb, zemb):
        """``x`` ``(B, in_ch, H, W)`` -> ``(B, out_ch, H', W')`` given ``temb`` and ``zemb`` ``(B, dim)``."""
        h = self.act(self.norm0(x, zemb))
        if self.up or self.down:
            h = resample_2d(h, self.up, self.down, self.fir, self.fir_kernel)
            x = resample_2d(x, self.up, self.down, self.fir, self.fir_kernel)
        h = self.conv0(h)
        h = h + self.temb(self.act(temb))[:, :, None, None]
        h = self.act(self.norm1(h, zemb))
        h = self.conv1(self.dropout(h))
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over pixels (NCSN++ ``AttnBlockpp``), with group norm and residual.

    Parameters
    ----------
    channels : int
        Feature channels.
    skip_rescale : bool
        Return ``(x + h) / sqrt(2)``.
    init_scale : float
        Variance scale of the output projection.
    """

    def __init__(self, channels, skip_rescale=True, init_scale=0.0):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels), channels, eps=1e-6)
        self.qkv = conv2d(channels, 3 * channels, 1, padding=0, init_scale=0.1)
        self.proj = conv2d(channels, channels, 1, padding=0, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x):
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        b, c, hgt, wid = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, hgt * wid).transpose(2, 3).unbind(1)
        h = nn.functional.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        h = self.proj(h.transpose(1, 2).reshape(b, c, hgt, wid))
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class NCSNpp(nn.Module):
    """Conditional NCSN++ generator predicting ``x_0`` from ``cat(x_{t+1}, condition)``, ``t`` and ``z``.

    Parameters
    ----------
    config : ads_synth.translation.config.NCSNppConfig
        Network sizes.
    image_size : int
        Training tile side (decides which levels carry attention).
    nz : int
        Latent code size.
    n_mlp : int
        Hidden layers of the latent mapping network.
    in_channels : int
        Input channels (2: noisy image and condition).
    out_channels : int
        Output channels (1).
    """

    def __init__(self, config, image_size, nz, n_mlp, in_channels=2, out_channels=1):
        super().__init__()
        cfg = config
        nf, levels, patch = cfg.ch, len(cfg.ch_mult), cfg.patch_size
        self.nf, self.patch_size = nf, patch
        in_channels, image_size = in_channels * patch ** 2, image_size // patch
        self.size_multiple = cfg.size_multiple
        temb_dim, zdim = 4 * nf, cfg.z_emb_dim
        self.attn_levels = tuple(i for i in range(levels) if image_size // 2 ** i in cfg.attn_resolutions)

        self.temb_mlp = nn.Sequential(dense(nf, temb_dim), nn.SiLU(), dense(temb_dim, temb_dim))
        mapping = [PixelNorm(), dense(nz, zdim), nn.SiLU()]
        for _ in range(n_mlp):
            mapping += [dense(zdim, zdim), nn.SiLU()]
        self.z_mapping = nn.Sequential(*mapping)

        def block(i, o, **kw):
            return ResBlockAdaGN(i, o, temb_dim, zdim, dropout=cfg.dropout, fir=cfg.fir, fir_kernel=cfg.fir_kernel,
                                 skip_rescale=cfg.skip_rescale, init_scale=cfg.init_scale, **kw)

        def attn(c):
            return AttnBlock(c, skip_rescale=cfg.skip_rescale, init_scale=cfg.init_scale)

        self.conv_in = conv2d(in_channels, nf, 3)
        # down path; hs_ch tracks the channels of the skip connections, in order
        hs_ch, ch, pyramid_ch = [nf], nf, in_channels
        self.down_blocks, self.down_attn = nn.ModuleList(), nn.ModuleDict()
        self.downsamplers, self.pyramid = nn.ModuleList(), nn.ModuleList()
        for i in range(levels):
            blocks = nn.ModuleList()
            for j in range(cfg.num_res_blocks):
                out = nf * cfg.ch_mult[i]
                blocks.append(block(ch, out))
                ch = out
                if i in self.attn_levels:
                    self.down_attn[f"{i}_{j}"] = attn(ch)
                hs_ch.append(ch)
            self.down_blocks.append(blocks)
            if i != levels - 1:
                self.downsamplers.append(block(ch, ch, down=True))
                self.pyramid.append(DownsampleConv(pyramid_ch, ch, cfg.fir, cfg.fir_kernel))
                pyramid_ch = ch
                hs_ch.append(ch)

        self.mid = nn.ModuleList([block(ch, ch), attn(ch), block(ch, ch)])

        self.up_blocks, self.up_attn, self.upsamplers = nn.ModuleList(), nn.ModuleDict(), nn.ModuleList()
        for i in reversed(range(levels)):
            blocks = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                out = nf * cfg.ch_mult[i]
                blocks.append(block(ch + hs_ch.pop(), out))
                ch = out
            self.up_blocks.append(blocks)
            if i in self.attn_levels:
                self.up_attn[str(i)] = attn(ch)
            if i != 0:
                self.upsamplers.append(block(ch, ch, up=True))
        assert not hs_ch
        self.norm_out = nn.GroupNorm(num_groups(ch), ch, eps=1e-6)
        self.conv_out = conv2d(ch, out_channels * patch ** 2, 3, init_scale=cfg.init_scale)
        self.act = nn.SiLU()
        self.skip_rescale = cfg.skip_rescale

    def forward(self, x, t, z):
        """Predict ``x_0``.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, 2, H, W)``: ``cat(x_{t+1}, condition)``; H and W multiples of ``size_multiple``.
        t : torch.Tensor
            ``(B,)`` integer time steps.
        z : torch.Tensor
            ``(B, nz)`` latent codes.

        Returns
        -------
        torch.Tensor
            ``(B, 1, H, W)`` in [-1, 1] (tanh).
        """
        m = self.size_multiple
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"NCSN++ input sides must be multiples of {m}, got {tuple(x.shape[-2:])}")
        temb = self.temb_mlp(timestep_embedding(t, self.nf).to(x.dtype))
        zemb = self.z_mapping(z)
        if self.patch_size > 1:
            x = nn.functional.pixel_unshuffle(x, self.patch_size)

        pyramid = x
        hs = [self.conv_in(x)]
        for i, blocks in enumerate(self.down_blocks):
            for j, blk in enumerate(blocks):
                h = blk(hs[-1], temb, zemb)
                if f"{i}_{j}" in self.down_attn:
                    h = self.down_attn[f"{i}_{j}"](h)
                hs.append(h)
            if i < len(self.downsamplers):
                h = self.downsamplers[i](hs[-1], temb, zemb)
                pyramid = self.pyramid[i](pyramid)
                pyramid = (pyramid + h) / _SQRT2 if self.skip_rescale else pyramid + h
                h = pyramid
                hs.append(h)

        h = self.mid[0](hs[-1], temb, zemb)
        h = self.mid[1](h)
        h = self.mid[2](h, temb, zemb)

        levels = len(self.up_blocks)
        for k, blocks in enumerate(self.up_blocks):
            i = levels - 1 - k
            for blk in blocks:
                h = blk(torch.cat([h, hs.pop()], dim=1), temb, zemb)
            if str(i) in self.up_attn:
                h = self.up_attn[str(i)](h)
            if i != 0:
                h = self.upsamplers[k](h, temb, zemb)
        h = self.conv_out(self.act(self.norm_out(h)))
        if self.patch_size > 1:
            h = nn.functional.pixel_shuffle(h, self.patch_size)
        return torch.tanh(h)
