"""SynDiff configuration: frozen dataclasses and the preset registry.

A :class:`SynDiffConfig` describes everything needed to rebuild a model (network sizes, diffusion schedule) and to
train it (optimiser and loss hyper-parameters). It is stored beside the weights (``config.json``) so that a
checkpoint is rebuilt from its own description, never from the code's defaults.

Presets are functions returning a config, registered with :func:`register_preset` (as timm registers models)::

    @register_preset("my-preset")
    def my_preset():
        return SynDiffConfig(...)

    cfg = get_preset("compact")
    cfg = dataclasses.replace(cfg, ncsnpp=dataclasses.replace(cfg.ncsnpp, ch=48))

Built-in presets: ``paper`` (AxonDeepSynth / SynDiff reference sizes, GPU only), ``compact`` (trains on a CPU,
translates >= 0.5 Mpx/s on two cores, a few MB), ``tiny`` (unit tests).
"""

import dataclasses
import typing
from dataclasses import dataclass, field

from ads_synth.errors import InputError


def _check(condition, message):
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class NCSNppConfig:
    """Diffusive generator (NCSN++ U-Net with adaptive group norm).

    Attributes
    ----------
    ch : int
        Base channels (``nf``).
    ch_mult : tuple of int
        Channel multiplier per resolution level; ``len(ch_mult) - 1`` stride-2 down-samplings.
    num_res_blocks : int
        Residual blocks per level on the way down (``+ 1`` on the way up).
    attn_resolutions : tuple of int
        Feature-map sides (at the training ``image_size``, after patching) of the levels that carry
        self-attention (the middle block always has it). The levels are fixed when the network is built, so
        tiles of another size run the same layers.
    dropout : float
        Dropout inside the residual blocks.
    z_emb_dim : int
        Width of the latent mapping network and of the AdaGN style input.
    fir : bool
        FIR up/down-sampling with ``fir_kernel`` (the reference); False uses nearest up-sampling and 2x2 average
        pooling (NCSN++'s ``fir=False``).
    fir_kernel : tuple of int
        FIR taps for up/down-sampling.
    skip_rescale : bool
        Divide residual sums by sqrt(2).
    init_scale : float
        Variance scale of the last conv of each block and of the output conv (0 means 1e-10, as NCSN++).
    patch_size : int
        Space-to-depth factor: the U-Net runs on ``patch_size x patch_size`` pixel blocks stacked as channels
        (``pixel_unshuffle``) and its output is ``pixel_shuffle``-d back. 1 is the reference network; the compact
        preset uses 4 to run the U-Net at a lower resolution (as "simple diffusion", Hoogeboom et al. 2023).
    """

    ch: int = 64
    ch_mult: tuple = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple = (16,)
    dropout: float = 0.0
    z_emb_dim: int = 256
    fir: bool = True
    fir_kernel: tuple = (1, 3, 3, 1)
    skip_rescale: bool = True
    init_scale: float = 0.0
    patch_size: int = 1

    def __post_init__(self):
        _check(self.ch >= 1 and len(self.ch_mult) >= 1 and min(self.ch_mult) >= 1, f"bad NCSN++ sizes: {self}")
        _check(self.num_res_blocks >= 1, "ncsnpp.num_res_blocks must be >= 1")
        _check(0.0 <= self.dropout < 1.0, "ncsnpp.dropout must be in [0, 1)")
        _check(self.patch_size >= 1, "ncsnpp.patch_size must be >= 1")

    @property
    def size_multiple(self):
        """Total down-sampling factor of the U-Net (patching included): tile sides must be multiples of it."""
        return self.patch_size * 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class ResnetGenConfig:
    """Non-diffusive generator (CycleGAN ResNet generator with instance norm).

    Attributes
    ----------
    ngf : int
        Base filters.
    n_blocks : int
        Residual blocks at the bottleneck.
    n_downsampling : int
        Stride-2 down-samplings (and as many up-samplings).
    """

    ngf: int = 64
    n_blocks: int = 6
    n_downsampling: int = 2

    def __post_init__(self):
        _check(self.ngf >= 1 and self.n_blocks >= 0 and self.n_downsampling >= 0, f"bad ResNet sizes: {self}")


@dataclass(frozen=True)
class PatchGANConfig:
    """Non-diffusive discriminator (CycleGAN PatchGAN with instance norm).

    Attributes
    ----------
    ndf : int
        Base filters.
    n_layers : int
        Stride-2 conv layers (3 gives the 70x70 PatchGAN).
    """

    ndf: int = 64
    n_layers: int = 3

    def __post_init__(self):
        _check(self.ndf >= 1 and self.n_layers >= 1, f"bad PatchGAN sizes: {self}")


@dataclass(frozen=True)
class TDiscConfig:
    """Time-dependent discriminator of the diffusive branch (denoising-diffusion-GAN ``Discriminator_large``).

    Attributes
    ----------
    ngf : int
        Base filters.
    ch_mult : tuple of int
        Channels of the start conv (``ngf * ch_mult[0]``) and of each residual down block after it; one stride-2
        down-sampling per block (``len(ch_mult) - 1``).
    t_emb_dim : int
        Time embedding width.
    stddev_group : int
        Largest group of the minibatch standard deviation layer.
    """

    ngf: int = 64
    ch_mult: tuple = (2, 4, 8, 8, 8, 8, 8)
    t_emb_dim: int = 256
    stddev_group: int = 4

    def __post_init__(self):
        _check(self.ngf >= 1 and len(self.ch_mult) >= 2 and min(self.ch_mult) >= 1, f"bad discriminator: {self}")
        _check(self.stddev_group >= 1, "tdisc.stddev_group must be >= 1")

    @property
    def size_multiple(self):
        """Total down-sampling factor: training tiles must be multiples of it."""
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class SynDiffConfig:
    """Everything that defines a SynDiff model and its training.

    Attributes
    ----------
    image_size : int
        Training tile side in pixels (also fixes which NCSN++ levels carry attention).
    num_channels : int
        Image channels (1, grayscale).
    num_timesteps : int
        Diffusion steps (SynDiff: 4).
    beta_min, beta_max : float
        Variance-preserving schedule limits.
    nz : int
        Latent code size.
    n_mlp : int
        Hidden layers of the latent mapping network.
    ncsnpp, resnet_gen, patchgan, tdisc
        Network sizes.
    lr_g, lr_d : float
        Adam learning rates of generators and discriminators.
    beta1, beta2 : float
        Adam betas.
    ema_decay : float
        Exponential moving average of the generator weights.
    lambda_l1 : float
        Weight of the cycle L1 losses.
    r1_gamma : float
        R1 gradient penalty weight.
    lazy_reg : int
        R1 applied every ``lazy_reg`` steps.
    batch_size : int
        Training batch size.
    cosine_decay : bool
        Cosine learning-rate decay over training.
    nd_condition_grad : bool
        Let the diffusive generators' losses train the non-diffusive generators through their condition (True:
        the paper's joint loss, what the shipped translators were trained with; configs written before this field
        existed read as True). False trains the non-diffusive half on its own adversarial and cycle losses only
        (``compact-cl``): the diffusive generator reconstructs ``X`` from the non-diffusive translation of ``X``,
        which is easiest when that translation is a copy. Measured alone (with the paper's optimiser) it did not
        make the non-diffusive half learn TEM -> SEM's contrast (docs/results.md, 2026-12-03).
    """

    image_size: int = 256
    num_channels: int = 1
    num_timesteps: int = 4
    beta_min: float = 0.1
    beta_max: float = 20.0
    nz: int = 100
    n_mlp: int = 3
    ncsnpp: NCSNppConfig = field(default_factory=NCSNppConfig)
    resnet_gen: ResnetGenConfig = field(default_factory=ResnetGenConfig)
    patchgan: PatchGANConfig = field(default_factory=PatchGANConfig)
    tdisc: TDiscConfig = field(default_factory=TDiscConfig)
    lr_g: float = 1.6e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    ema_decay: float = 0.999
    lambda_l1: float = 0.5
    r1_gamma: float = 1.0
    lazy_reg: int = 10
    batch_size: int = 1
    cosine_decay: bool = True
    nd_condition_grad: bool = True

    def __post_init__(self):
        _check(self.num_channels == 1, "num_channels must be 1 (grayscale microscopy)")
        _check(self.num_timesteps >= 1, "num_timesteps must be >= 1")
        _check(0 < self.beta_min < self.beta_max, "need 0 < beta_min < beta_max")
        _check(self.nz >= 1 and self.n_mlp >= 0 and self.batch_size >= 1 and self.lazy_reg >= 1,
               "nz, batch_size and lazy_reg must be >= 1, n_mlp >= 0")
        multiple = self.training_size_multiple
        _check(self.image_size >= multiple and self.image_size % multiple == 0,
               f"image_size {self.image_size} must be a positive multiple of {multiple} (the networks' "
               "total down-sampling)")

    @property
    def training_size_multiple(self):
        """Tile sides all eight networks accept: a multiple of every network's down-sampling factor."""
        return max(self.ncsnpp.size_multiple, 2 ** self.resnet_gen.n_downsampling, self.tdisc.size_multiple,
                   2 ** self.patchgan.n_layers)

    def to_dict(self):
        """Plain JSON-ready dict (nested dicts, tuples as lists)."""
        return _to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data):
        """Rebuild from :meth:`to_dict` output; every field must be present (but those of ``_LEGACY``), and no
        unknown one.

        Parameters
        ----------
        data : dict
            As written by :meth:`to_dict` (lists accepted for tuples, ints for floats).

        Returns
        -------
        SynDiffConfig

        Raises
        ------
        ValueError
            A missing or unknown field, a value of the wrong type, or an invalid value.
        """
        return _from_dict(cls, data, "")


def _to_jsonable(value):
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


#: Fields added after models were shipped: the value a config without them was trained with.
_LEGACY = {"SynDiffConfig": {"nd_condition_grad": True}}


def _from_dict(cls, data, where):
    if not isinstance(data, dict):
        raise ValueError(f"config{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    data = {**_LEGACY.get(cls.__name__, {}), **data}
    missing = [n for n in names if n not in data]
    unknown = sorted(set(data) - set(names))
    if missing or unknown:
        raise ValueError(f"config{where}: missing fields {missing}, unknown fields {unknown}")
    kwargs = {}
    for name in names:
        value, hint = data[name], hints[name]
        if dataclasses.is_dataclass(hint):
            value = _from_dict(hint, value, f"{where}.{name}")
        elif hint is tuple:
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"config{where}.{name}: expected a list, got {value!r}")
            value = tuple(value)
        elif hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ValueError(f"config{where}.{name}: expected {hint.__name__}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# preset registry
# ---------------------------------------------------------------------------------------------------------------
_PRESETS = {}


def register_preset(name):
    """Decorator registering a function that returns a :class:`SynDiffConfig` under ``name``.

    Parameters
    ----------
    name : str
        Preset name; registering the same name twice is an error.

    Returns
    -------
    callable
        The decorator (it returns the function unchanged).
    """

    def decorator(fn):
        if name in _PRESETS:
            raise ValueError(f"preset {name!r} is already registered")
        _PRESETS[name] = fn
        return fn

    return decorator


def get_preset(name):
    """The config of a registered preset.

    Raises
    ------
    InputError
        Unknown name (the message lists the known ones).
    """
    if name not in _PRESETS:
        raise InputError(f"unknown SynDiff preset {name!r}: choose one of {', '.join(list_presets())}")
    config = _PRESETS[name]()
    if not isinstance(config, SynDiffConfig):
        raise TypeError(f"preset {name!r} returned {type(config).__name__}, not SynDiffConfig")
    return config


def list_presets():
    """Names of the registered presets, sorted."""
    return sorted(_PRESETS)


@register_preset("paper")
def paper():
    """AxonDeepSynth / SynDiff reference networks (156M trained parameters, 2.1 MFLOP per pixel and pass): GPU only."""
    return SynDiffConfig(
        image_size=512,
        ncsnpp=NCSNppConfig(ch=64, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_resolutions=(16,)),
        resnet_gen=ResnetGenConfig(ngf=64, n_blocks=6),
        patchgan=PatchGANConfig(ndf=64, n_layers=3),
        tdisc=TDiscConfig(ngf=64, ch_mult=(2, 4, 8, 8, 8, 8, 8), t_emb_dim=256),
    )


@register_preset("compact")
def compact():
    """CPU-sized networks (3.1M trained parameters; the two diffusive generators, 2.1M, ship in 4.3 MB of float16).

    The diffusive U-Net runs on 4x4 pixel blocks (``patch_size=4``; 24, 24, 48, 48 channels; attention at the
    lowest, 8 px level of a 256 px tile): about 14 kFLOP per pixel and pass, 150x fewer than ``paper``, for
    whole-image translation (4 passes, overlapping tiles) >= 0.5 Mpx/s on two CPU cores. A training step
    (256 px, batch 1) costs about 1.3 s of one core.
    """
    return SynDiffConfig(
        image_size=256,
        ncsnpp=NCSNppConfig(ch=24, ch_mult=(1, 1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), z_emb_dim=64,
                            patch_size=4),
        resnet_gen=ResnetGenConfig(ngf=8, n_blocks=6),
        patchgan=PatchGANConfig(ndf=16, n_layers=3),
        tdisc=TDiscConfig(ngf=4, ch_mult=(2, 4, 8, 16, 16), t_emb_dim=64),
    )


@register_preset("compact-cl")
def compact_cl():
    """``compact`` with a constant learning rate: 2e-4 for generators and discriminators, Adam betas (0.5, 0.999)
    (CycleGAN's), no cosine decay, and the non-diffusive half trained on its own losses only
    (``nd_condition_grad=False``). The default of ``translation train`` and of ``family train``
    (:data:`ads_synth.family.options.FAMILY_PRESET`).

    Why (docs/results.md, 2026-12-03): with ``compact``'s (the paper's) 1.6e-4 / 1e-4, betas (0.5, 0.9) and
    cosine decay, SynDiff's non-diffusive generators kept TEM's contrast (dark myelin) in their "SEM"
    translations through 600, 800 and 2758 steps, and the diffusive generators conditioned on them did too, so
    tutorship learned from TEM-looking images. With these settings the same run learned SEM's contrast (bright
    myelin, dark axons) in both halves within 800 steps on TEM -> SEM. ``compact`` stays as it was: the shipped
    TEM2SEM / TEM2BF translators were trained with it and their cards rebuild it.
    """
    return dataclasses.replace(compact(), lr_g=2e-4, lr_d=2e-4, beta2=0.999, cosine_decay=False,
                               nd_condition_grad=False)


#: The preset new translation runs use unless told otherwise.
DEFAULT_PRESET = "compact-cl"


@register_preset("tiny")
def tiny():
    """Minimal networks for unit tests (32 px tiles, a training step well under a second)."""
    return SynDiffConfig(
        image_size=32,
        ncsnpp=NCSNppConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), z_emb_dim=16),
        resnet_gen=ResnetGenConfig(ngf=8, n_blocks=1),
        patchgan=PatchGANConfig(ndf=8, n_layers=2),
        tdisc=TDiscConfig(ngf=4, ch_mult=(1, 2, 2), t_emb_dim=16),
        nz=8,
        n_mlp=1,
    )
