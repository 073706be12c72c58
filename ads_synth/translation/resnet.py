"""Non-diffusive generator of SynDiff: the CycleGAN ResNet generator (Zhu et al. 2017), in plain PyTorch.

Reflection pad + 7x7 conv, ``n_downsampling`` stride-2 convs, ``n_blocks`` residual blocks, as many transposed
convs, reflection pad + 7x7 conv and tanh; instance norm (no affine, no running statistics) and ReLU throughout.
Convolutions followed by instance norm have no bias (the norm removes it, so it would never train).
"""

from torch import nn


def _init_normal(module):
    """CycleGAN's ``init_weights(init_type='normal', gain=0.02)``: N(0, 0.02) conv weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResnetBlock(nn.Module):
    """``x + conv-norm-relu-conv-norm(x)`` with reflection padding.

    Parameters
    ----------
    channels : int
        Feature channels.
    """

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.InstanceNorm2d(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.InstanceNorm2d(channels),
        )

    def forward(self, x):
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Image-to-image generator ``(B, in, H, W)`` -> ``(B, out, H, W)`` in [-1, 1].

    Parameters
    ----------
    config : ads_synth.translation.config.ResnetGenConfig
        ``ngf``, ``n_blocks``, ``n_downsampling``.
    in_channels, out_channels : int
        Image channels.
    """

    def __init__(self, config, in_channels=1, out_channels=1):
        super().__init__()
        ngf, n_down = config.ngf, config.n_downsampling
        self.size_multiple = 2 ** n_down
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=False), nn.InstanceNorm2d(ngf),
                  nn.ReLU(True)]
        for i in range(n_down):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False), nn.InstanceNorm2d(2 * c),
                       nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 2 ** n_down) for _ in range(config.n_blocks)]
        for i in reversed(range(n_down)):
            c = ngf * 2 ** (i + 1)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=False),
                       nn.InstanceNorm2d(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        _init_normal(self)

    def forward(self, x):
        """Translate ``x`` ``(B, in, H, W)``, H and W multiples of ``size_multiple``."""
        m = self.size_multiple
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"ResNet generator input sides must be multiples of {m}, got {tuple(x.shape[-2:])}")
        return self.model(x)
