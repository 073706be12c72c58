"""The SynDiff model: its eight networks, the diffusion process, tile translation and the checkpoint format.

Directions are ``"L2U"`` (labeled modality to unlabeled) and ``"U2L"``; domains are ``"L"`` and ``"U"``.
``gen_diff[d]`` and ``gen_nd[d]`` produce images of the target domain of direction ``d``;
``disc_diff[D]`` and ``disc_nd[D]`` judge images of domain ``D``.

Checkpoint format 1 (a folder)::

    config.json   SynDiffConfig.to_dict() plus "_class_name": "SynDiff", "ads_synth_version", "format": 1 and
                  "extra" (a JSON dict); folders without "_class_name" (older ones) are SynDiff too
    weights.pt    state dict (float16 by default), all four parts or only "gen_diff" (generators_only=True)

A checkpoint is rebuilt from its own ``config.json``, never from the code's presets.
"""

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

import ads_synth
from ads_synth.atomic import atomic_torch_save, atomic_write_text
from ads_synth.errors import InputError
from ads_synth.translation.config import SynDiffConfig
from ads_synth.translation.diffusion import DiffusionProcess
from ads_synth.translation.discriminators import PatchGAN, TimeDiscriminator
from ads_synth.translation.ncsnpp import NCSNpp
from ads_synth.translation.resnet import ResnetGenerator
from ads_synth.translation.translators import CLASS_KEY, TranslatorMixin, register_translator

DIRECTIONS = ("L2U", "U2L")
DOMAINS = ("L", "U")
PARTS = ("gen_diff", "gen_nd", "disc_diff", "disc_nd")
FORMAT = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
_META_KEYS = ("ads_synth_version", "format", "extra", CLASS_KEY)


@register_translator("SynDiff")
class SynDiff(TranslatorMixin, nn.Module):
    """Two diffusive generators (NCSN++), two non-diffusive generators (ResNet), two time-dependent
    discriminators, two PatchGANs, and the diffusion process.

    Parameters
    ----------
    config : SynDiffConfig
        Sizes, schedule and training hyper-parameters.

    Attributes
    ----------
    gen_diff, gen_nd : nn.ModuleDict
        Generators keyed by direction (``"L2U"``, ``"U2L"``).
    disc_diff, disc_nd : nn.ModuleDict
        Discriminators keyed by domain (``"L"``, ``"U"``).
    diffusion : DiffusionProcess
        Schedule buffers and sampling.
    shipped_parts : tuple of str
        Parts loaded by :meth:`from_pretrained` (empty for a new model).
    """

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, SynDiffConfig):
            raise TypeError(f"SynDiff needs a SynDiffConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.gen_diff = nn.ModuleDict({
            d: NCSNpp(c.ncsnpp, c.image_size, c.nz, c.n_mlp, in_channels=2 * c.num_channels,
                      out_channels=c.num_channels)
            for d in DIRECTIONS})
        self.gen_nd = nn.ModuleDict({d: ResnetGenerator(c.resnet_gen, c.num_channels, c.num_channels)
                                     for d in DIRECTIONS})
        self.disc_diff = nn.ModuleDict({d: TimeDiscriminator(c.tdisc, c.num_channels) for d in DOMAINS})
        self.disc_nd = nn.ModuleDict({d: PatchGAN(c.patchgan, c.num_channels) for d in DOMAINS})
        self.diffusion = DiffusionProcess(c.num_timesteps, c.beta_min, c.beta_max)
        self.shipped_parts = ()
        self._extra = {}

    @property
    def size_multiple(self):
        """Total down-sampling factor of the diffusive U-Net: :meth:`translate` needs sides multiple of it."""
        return self.config.ncsnpp.size_multiple

    @property
    def extra(self):
        """The ``extra`` dict saved with the checkpoint (empty for a new model)."""
        return self._extra

    def generators(self):
        """The four generators by name (``"gen_diff.L2U"``, ..., ``"gen_nd.U2L"``), e.g. for EMA."""
        return {f"{part}.{k}": m for part in ("gen_diff", "gen_nd") for k, m in getattr(self, part).items()}

    def discriminators(self):
        """The four discriminators by name (``"disc_diff.L"``, ..., ``"disc_nd.U"``)."""
        return {f"{part}.{k}": m for part in ("disc_diff", "disc_nd") for k, m in getattr(self, part).items()}

    def parameter_counts(self):
        """Trainable parameters per part (``"gen_diff"``, ``"gen_nd"``, ``"disc_diff"``, ``"disc_nd"``)."""
        return {p: sum(q.numel() for q in getattr(self, p).parameters()) for p in PARTS}

    @torch.no_grad()
    def translate(self, x, direction, seed=None):
        """Translate tiles with the diffusive generator of ``direction`` (the only network that runs).

        The reverse chain starts from noise and is conditioned on ``x`` itself at every step.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, 1, H, W)`` in [-1, 1]; H and W multiples of :attr:`size_multiple`. Moved to the model's device.
        direction : str
            ``"L2U"`` or ``"U2L"``.
        seed : int or sequence of int, optional
            Tile ``b`` of the batch draws its initial noise, latents and posterior noise from a ``torch.Generator``
            (on the model's device) seeded with ``seed + b`` (or ``seed[b]``): the same seed gives the same output,
            and a tile's output depends on its own seed only, not on the batch it is in. None draws from torch's
            global generator.

        Returns
        -------
        torch.Tensor
            ``(B, 1, H, W)`` in [-1, 1], on the model's device.
        """
        self.check_tiles(x, direction)
        gen = self.gen_diff[direction]
        param = next(gen.parameters())
        x = x.to(device=param.device, dtype=param.dtype)
        rng = None
        if seed is not None:
            rng = [torch.Generator(device=param.device) for _ in range(x.shape[0])]
            seeds = [int(seed) + b for b in range(x.shape[0])] if np.ndim(seed) == 0 else [int(v) for v in seed]
            if len(seeds) != x.shape[0]:
                raise ValueError(f"{len(seeds)} seeds for {x.shape[0]} tiles")
            for g, v in zip(rng, seeds):
                g.manual_seed(v)
        was_training = gen.training
        gen.eval()
        try:
            return self.diffusion.sample(gen, x, self.config.nz, generator_rng=rng)
        finally:
            gen.train(was_training)

    # -----------------------------------------------------------------------------------------------------------
    # checkpoint format
    # -----------------------------------------------------------------------------------------------------------
    def save_pretrained(self, directory, dtype=torch.float16, extra=None, generators_only=False):
        """Write ``config.json`` and ``weights.pt`` into ``directory``, each atomically (temporary file + rename).

        Parameters
        ----------
        directory : str or Path
            Created if needed; existing checkpoint files in it are replaced.
        dtype : torch.dtype or None
            Storage dtype of floating-point tensors (None keeps the model's).
        extra : dict, optional
            JSON-serialisable metadata (pixel size, normalisation, training state, ...), returned by
            :attr:`extra` after loading.
        generators_only : bool
            Store only the diffusive generators (``gen_diff``), all that translation needs.

        Returns
        -------
        Path
            ``directory``.
        """
        directory = Path(directory)
        meta = {CLASS_KEY: self.class_name, "ads_synth_version": ads_synth.__version__, "format": FORMAT,
                "extra": {} if extra is None else extra}
        if not isinstance(meta["extra"], dict):
            raise TypeError(f"extra must be a dict, got {type(extra).__name__}")
        text = json.dumps({**self.config.to_dict(), **meta}, indent=2)  # fails before anything is written
        prefixes = ("gen_diff.",) if generators_only else tuple(f"{p}." for p in PARTS)
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith(prefixes):
                value = value.detach().cpu()
                if dtype is not None and value.is_floating_point():
                    if dtype == torch.float16 and value.abs().max() > torch.finfo(torch.float16).max:
                        raise ValueError(f"{key} exceeds the float16 range: save with dtype=torch.float32")
                    value = value.to(dtype)
                state[key] = value.clone()
        directory.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(state, directory / WEIGHTS_FILE)
        atomic_write_text(directory / CONFIG_FILE, text)
        return directory

    @classmethod
    def from_pretrained(cls, path, map_location="cpu"):
        """Rebuild a model from a checkpoint folder (or a file inside it) written by :meth:`save_pretrained`.

        The networks are built from the checkpoint's ``config.json`` alone; stored weights (any float dtype) are
        loaded into float32 modules. Parts that were not stored (e.g. discriminators of a shipped model) keep
        their random initialisation; :attr:`shipped_parts` lists the loaded ones.

        Parameters
        ----------
        path : str or Path
            Checkpoint folder, or its ``config.json`` / ``weights.pt``.
        map_location : str or torch.device
            Device of the returned model.

        Returns
        -------
        SynDiff

        Raises
        ------
        InputError
            Missing files, unreadable or incompatible config, weights that do not match it.
        """
        path = Path(path)
        directory = path.parent if path.is_file() else path
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise InputError(f"{directory} is not a SynDiff checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE} "
                             "(give the folder written by training)")
        try:
            data = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"{config_path}: cannot read it ({err}); restore the file from the checkpoint") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise InputError(f"{config_path}: checkpoint format {found!r}, this ads-synth reads format {FORMAT}; "
                             "use a matching ads-synth version")
        meta = {k: data.pop(k, None) for k in _META_KEYS}
        if meta[CLASS_KEY] not in (None, cls.class_name):
            raise InputError(f"{config_path}: a {meta[CLASS_KEY]} model, not {cls.class_name}; load it with "
                             "load_translation_model")
        try:
            config = SynDiffConfig.from_dict(data)
        except (ValueError, TypeError) as err:
            raise InputError(f"{config_path}: invalid config: {err}") from None
        model = cls(config)
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many types for a corrupt file
            raise InputError(f"{weights_path}: cannot load it ({type(err).__name__}); the file is corrupt") from None
        own = model.state_dict()
        unknown = sorted(set(state) - set(own))
        parts = tuple(p for p in PARTS if any(k.startswith(p + ".") for k in state))
        incomplete = sorted(k for k in own if k.startswith(tuple(f"{p}." for p in parts)) and k not in state)
        if unknown or incomplete or not parts:
            raise InputError(f"{weights_path} does not match {CONFIG_FILE}: unknown {unknown[:3]}, missing "
                             f"{incomplete[:3]}; the two files come from different checkpoints")
        try:
            model.load_state_dict(state, strict=False)
        except RuntimeError as err:
            raise InputError(f"{weights_path} does not match {CONFIG_FILE} "
                             f"({str(err).splitlines()[-1].strip()})") from None
        model.shipped_parts = parts
        model._extra = meta["extra"] or {}
        return model.to(map_location)
