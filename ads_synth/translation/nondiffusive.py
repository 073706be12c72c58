"""The non-diffusive translator: SynDiff's two CycleGAN ResNet generators on their own (one forward pass a tile).

SynDiff trains, beside its diffusive generators, a non-diffusive generator per direction (``gen_nd``, the
CycleGAN half; :mod:`ads_synth.translation.resnet`). :class:`ResnetTranslator` is those two generators as a
translator type of its own (:mod:`ads_synth.translation.translators`): deterministic (``seed`` is ignored) and one
pass per tile instead of the diffusion chain. A training run's shipped folders (``best/``, ``last/``) keep only the
diffusive generators, so :func:`export_nondiffusive` reads the EMA weights of ``gen_nd`` from the run's resumable
``checkpoint.pt`` (``ads-synth translation export --non-diffusive RUN_DIR OUT``).

Folder format: ``config.json`` = the run's SynDiffConfig (only ``resnet_gen``, ``num_channels`` and
``image_size`` are used) + ``"_class_name": "ResnetTranslator"``, ``"format": 1``, ``"extra"`` (working pixel
sizes...); ``weights.pt`` = ``gen_nd.L2U.*`` and ``gen_nd.U2L.*`` tensors (float16 by default).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

import ads_synth
from ads_synth.atomic import atomic_torch_save, atomic_write_text
from ads_synth.errors import InputError
from ads_synth.translation.config import SynDiffConfig
from ads_synth.translation.formats import CHECKPOINT_NAME, CONFIG_NAME, WEIGHTS_NAME, is_run_dir, run_model_dir
from ads_synth.translation.resnet import ResnetGenerator
from ads_synth.translation.translators import CLASS_KEY, TranslatorMixin, register_translator

DIRECTIONS = ("L2U", "U2L")
FORMAT = 1


@register_translator("ResnetTranslator")
class ResnetTranslator(TranslatorMixin, nn.Module):
    """SynDiff's non-diffusive generators, one per direction.

    Parameters
    ----------
    config : SynDiffConfig
        The SynDiff run's configuration (``resnet_gen``, ``num_channels``, ``image_size``).
    extra : dict, optional
        Metadata (working pixel sizes, ...).
    """

    def __init__(self, config, extra=None):
        super().__init__()
        if not isinstance(config, SynDiffConfig):
            raise TypeError(f"ResnetTranslator needs a SynDiffConfig, got {type(config).__name__}")
        self.config = config
        self.gen_nd = nn.ModuleDict({d: ResnetGenerator(config.resnet_gen, config.num_channels, config.num_channels)
                                     for d in DIRECTIONS})
        self._extra = dict(extra or {})

    @property
    def extra(self):
        return self._extra

    @property
    def size_multiple(self):
        """The generator's down-sampling factor (``2 ** n_downsampling``)."""
        return 2 ** int(self.config.resnet_gen.n_downsampling)

    @torch.no_grad()
    def translate(self, x, direction, seed=None):
        """``(B, C, H, W)`` in [-1, 1] -> the other domain, one forward pass (deterministic: ``seed`` unused)."""
        self.check_tiles(x, direction)
        gen = self.gen_nd[direction]
        param = next(gen.parameters())
        was_training = gen.training
        gen.eval()
        try:
            return gen(x.to(device=param.device, dtype=param.dtype))
        finally:
            gen.train(was_training)

    def save_pretrained(self, directory, dtype=torch.float16, extra=None):
        """Write ``config.json`` and ``weights.pt`` into ``directory`` (each atomically); return ``directory``."""
        directory = Path(directory)
        extra = self._extra if extra is None else extra
        text = json.dumps({**self.config.to_dict(), CLASS_KEY: self.class_name,
                           "ads_synth_version": ads_synth.__version__, "format": FORMAT, "extra": extra}, indent=2)
        state = {k: (v.detach().cpu().to(dtype) if dtype is not None and v.is_floating_point() else v.detach().cpu())
                 for k, v in self.state_dict().items()}
        directory.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(state, directory / WEIGHTS_NAME)
        atomic_write_text(directory / CONFIG_NAME, text)
        return directory

    @classmethod
    def from_pretrained(cls, path, map_location="cpu"):
        """Rebuild from a folder written by :meth:`save_pretrained`; InputError when files are missing or differ."""
        path = Path(path)
        directory = path.parent if path.is_file() else path
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not config_path.is_file() or not weights_path.is_file():
            raise InputError(f"{directory}: a translation model folder needs {CONFIG_NAME} and {WEIGHTS_NAME}.")
        data = json.loads(config_path.read_text(encoding="utf-8"))
        if data.pop(CLASS_KEY, None) != cls.class_name or data.pop("format", None) != FORMAT:
            raise InputError(f"{config_path}: not a {cls.class_name} model folder (format {FORMAT}).")
        data.pop("ads_synth_version", None)
        extra = data.pop("extra", None) or {}
        try:
            config = SynDiffConfig.from_dict(data)
        except (ValueError, TypeError) as err:
            raise InputError(f"{config_path}: invalid config: {err}") from None
        model = cls(config, extra)
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        except RuntimeError as err:
            raise InputError(f"{weights_path} does not match {CONFIG_NAME} "
                             f"({str(err).splitlines()[-1].strip()})") from None
        return model.to(map_location).eval()


def export_nondiffusive(run_dir, out, overwrite=False) -> Path:
    """Write the EMA non-diffusive generators of the SynDiff training run ``run_dir`` as a model folder ``out``.

    The working pixel sizes and other metadata come from the run's checkpoint (the step it holds). InputError for
    a folder that is not a run, a run without a checkpoint, or an existing ``out`` without ``overwrite``.
    """
    run_dir, out = Path(run_dir), Path(out)
    if not is_run_dir(run_dir):
        raise InputError(f"{run_dir}: not a translation training run (its {CONFIG_NAME} names no run format); "
                         "give the --out folder of ads-synth translation train.")
    ckpt = run_dir / CHECKPOINT_NAME
    if not ckpt.is_file():
        raise InputError(f"{ckpt}: the run has saved no checkpoint yet; wait for its first checkpoint.")
    if (out / CONFIG_NAME).exists() and not overwrite:
        raise InputError(f"{out}: already holds a model; choose another folder or use --overwrite.")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own file: RNG states, options
    config = SynDiffConfig.from_dict(state["config"])
    model = ResnetTranslator(config, extra={**state.get("extra", {}), "exported_from": "gen_nd (EMA)"})
    ema = state["trainer"]["ema"]
    model.gen_nd.load_state_dict({f"{d}.{k}": v for d in DIRECTIONS for k, v in ema[f"gen_nd.{d}"].items()})
    if "pixel_size" not in model.extra:
        shipped = run_model_dir(run_dir)
        if shipped is not None:
            model._extra.update(json.loads((shipped / CONFIG_NAME).read_text(encoding="utf-8")).get("extra", {}))
    return model.save_pretrained(out)
