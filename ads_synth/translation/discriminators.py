"""Discriminators of SynDiff: the time-dependent one of the diffusive branch and the PatchGAN of the
non-diffusive branch.

:class:`TimeDiscriminator` follows denoising-diffusion-GAN's ``Discriminator_large`` (residual down blocks with a
time-embedding bias, minibatch standard deviation, summed features and one linear logit); :class:`PatchGAN` is
CycleGAN's ``NLayerDiscriminator`` with instance norm (convolutions followed by the norm have no bias).
"""

import math

import torch
from torch import nn

from ads_synth.translation.layers import conv2d, dense, resample_2d, timestep_embedding

_SQRT2 = math.sqrt(2.0)


class DownConvBlock(nn.Module):
    """Residual block: act, conv, + time bias, act, FIR down-sampling, conv; 1x1 skip; sum / sqrt(2).

    Parameters
    ----------
    in_ch, out_ch : int
        Channels.
    t_emb_dim : int
        Time embedding width.
    downsample : bool
        Halve the resolution (FIR).
    """

    def __init__(self, in_ch, out_ch, t_emb_dim, downsample=True):
        super().__init__()
        self.conv1 = conv2d(in_ch, out_ch, 3)
        self.conv2 = conv2d(out_ch, out_ch, 3, init_scale=0.0)
        self.dense_t = dense(t_emb_dim, out_ch)
        self.skip = conv2d(in_ch, out_ch, 1, padding=0, bias=False)
        self.downsample = downsample
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x, temb):
        """``(B, in_ch, H, W)`` -> ``(B, out_ch, H/2, W/2)``."""
        h = self.conv1(self.act(x)) + self.dense_t(temb)[:, :, None, None]
        h = self.act(h)
        if self.downsample:
            h, x = resample_2d(h, down=True), resample_2d(x, down=True)
        return (self.conv2(h) + self.skip(x)) / _SQRT2


class TimeDiscriminator(nn.Module):
    """Time-conditioned discriminator on ``cat(x_t, x_{t+1})``: one logit per sample.

    Parameters
    ----------
    config : ads_synth.translation.config.TDiscConfig
        ``ngf``, ``ch_mult``, ``t_emb_dim``, ``stddev_group``.
    in_channels : int
        Channels of one image (the input is two images stacked).
    """

    def __init__(self, config, in_channels=1):
        super().__init__()
        chans = [config.ngf * m for m in config.ch_mult]
        self.t_emb_dim = config.t_emb_dim
        self.stddev_group = config.stddev_group
        self.size_multiple = config.size_multiple
        self.act = nn.LeakyReLU(0.2)
        self.t_mlp = nn.Sequential(dense(config.t_emb_dim, config.t_emb_dim), nn.LeakyReLU(0.2),
                                   dense(config.t_emb_dim, config.t_emb_dim))
        self.start_conv = conv2d(2 * in_channels, chans[0], 1, padding=0)
        self.blocks = nn.ModuleList(DownConvBlock(a, b, config.t_emb_dim) for a, b in zip(chans[:-1], chans[1:]))
        self.final_conv = conv2d(chans[-1] + 1, chans[-1], 3)
        self.end_linear = dense(chans[-1], 1)

    def forward(self, x_t, t, x_tp1):
        """Score ``x_t`` (real, or a posterior sample of a generated ``x_0``) given ``x_{t+1}``.

        Parameters
        ----------
        x_t, x_tp1 : torch.Tensor
            ``(B, 1, H, W)``, H and W multiples of ``size_multiple``.
        t : torch.Tensor
            ``(B,)`` integer time steps.

        Returns
        -------
        torch.Tensor
            ``(B,)`` logits.
        """
        temb = self.act(self.t_mlp(timestep_embedding(t, self.t_emb_dim).to(x_t.dtype)))
        h = self.start_conv(torch.cat([x_t, x_tp1], dim=1))
        for block in self.blocks:
            h = block(h, temb)
        h = torch.cat([h, self._minibatch_stddev(h)], dim=1)
        h = self.act(self.final_conv(h))
        return self.end_linear(h.sum(dim=(2, 3))).squeeze(1)

    def _minibatch_stddev(self, h):
        """One feature map: the standard deviation across a group of samples, averaged (StyleGAN2)."""
        b, c, hgt, wid = h.shape
        group = min(b, self.stddev_group)
        while b % group:
            group -= 1
        y = h.reshape(group, -1, c, hgt, wid)
        y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))  # (b // group,)
        return y.repeat(group)[:, None, None, None].expand(b, 1, hgt, wid)


class PatchGAN(nn.Module):
    """CycleGAN PatchGAN: ``(B, 1, H, W)`` -> ``(B, 1, h, w)`` patch logits.

    Parameters
    ----------
    config : ads_synth.translation.config.PatchGANConfig
        ``ndf``, ``n_layers``.
    in_channels : int
        Image channels.
    """

    def __init__(self, config, in_channels=1):
        super().__init__()
        ndf, n = config.ndf, config.n_layers
        layers = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for i in range(1, n + 1):
            prev, mult = mult, min(2 ** i, 8)
            stride = 2 if i < n else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                       nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        """Patch logits of ``x`` ``(B, 1, H, W)``."""
        return self.model(x)
