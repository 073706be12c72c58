"""SynDiff training: the adversarial diffusion + cycle step, resumable runs, checkpoint scoring, data parallelism.

One training step follows SynDiff's ``train.py`` (Özbey et al., IEEE TMI 2023). With ``real_L``, ``real_U`` random
tiles, for each target domain ``X`` (the other one ``O``):

* discriminator step: ``x_t, x_tp1 = q_sample_pairs(real_X, t)``; the time-dependent discriminator ``D_diff_X``
  sees ``(x_t, t, x_tp1)`` as real (``softplus(-D)``, plus the R1 penalty ``r1_gamma / 2 * |dD/dx_t|^2`` every
  ``lazy_reg`` steps) and ``(x_pos, t, x_tp1)`` as fake (``softplus(D)``), where
  ``x0 = gen_diff[O2X](cat(x_tp1, gen_nd[X2O](real_X)), t, z)`` (the diffusive generator conditioned on the
  non-diffusive translation of ``real_X`` into ``O``, a pseudo pair) and ``x_pos = sample_posterior(x0, x_tp1, t)``.
  The PatchGAN ``D_nd_X`` sees ``real_X`` as real and ``gen_nd[O2X](real_O)`` as fake. SynDiff uses the same
  non-saturating softplus loss for these cycle discriminators (not LSGAN), and so does this code.
* generator step: adversarial ``softplus(-D_diff_X(x_pos))`` and ``softplus(-D_nd_X(gen_nd[O2X](real_O)))``,
  the pseudo-paired reconstruction ``L1(x0, real_X)`` and the cycle ``L1(gen_nd[O2X](gen_nd[X2O](real_X)), real_X)``;
  ``total = adv + nd_adv + lambda_l1 * (cycle + L1)``.

Adam (``lr_g`` / ``lr_d``, betas ``beta1, beta2``) with cosine decay per step to ``ETA_MIN`` over the run, and an
exponential moving average (``ema_decay``, with a warm-up, see :meth:`SynDiffTrainer.ema_decay`) of the four
generators; scoring and the saved models use the EMA.

Run folder (``RUN_DIR``)::

    config.json        written at start: SynDiff config, options, data and working pixel sizes
    checkpoint.pt      everything to continue exactly (networks, EMA, optimisers, schedulers, every RNG), atomic
    metrics.csv        step, losses, learning rates, seconds
    scores.csv         held-back cycle SSIM / PSNR / L1 (see :mod:`ads_synth.translation.scoring`)
    curves.png         losses and scores
    samples/step_XXXXXX.png
    best/  last/       the EMA diffusive generators (all translation needs), float16 (``SynDiff.from_pretrained``);
                       best by mean cycle SSIM

``--resume`` continues a stopped or killed run from ``checkpoint.pt`` exactly: on the CPU the next losses and
weights are bitwise those of an uninterrupted run. Rows of ``metrics.csv`` / ``scores.csv`` after the checkpoint
are dropped and written again.

Data parallel training: under ``torchrun --nproc_per_node=N`` (``RANK`` / ``WORLD_SIZE`` in the environment) the
process group is initialised (NCCL on CUDA, gloo on the CPU), every rank samples other tiles and other noise, and
the gradients of each optimiser step are averaged over the ranks with one all-reduce, which is what
``DistributedDataParallel`` computes. (The wrapper itself is not used: a SynDiff step runs several forward and
backward passes per network, including the R1 double backward, which DDP's bucketed hooks do not support.) Rank 0
writes the files and scores; the checkpoint holds every rank's RNG states.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ads_synth.atomic import atomic_torch_save, atomic_write_text, remove_stale_temps
from ads_synth.calibration import fitted_count
from ads_synth.device import resolve_device
from ads_synth.errors import InputError, NonFiniteError
from ads_synth.translation import scoring
from ads_synth.translation.config import DEFAULT_PRESET, SynDiffConfig, get_preset
from ads_synth.translation.formats import (  # noqa: F401 (CHECKPOINT_NAME, CONFIG_NAME re-exported)
    CHECKPOINT_NAME, CONFIG_NAME, RUN_FORMAT, SNAPSHOTS)
from ads_synth.translation.tiles import (
    TileSampler,
    holdout_split,
    load_domain,
    sample_pixel_sizes,
    working_pixel_sizes,
)

#: Learning rates decay (cosine) to this value at the last step, as in SynDiff.
ETA_MIN = 1e-5
#: Columns of ``metrics.csv``.
METRIC_COLUMNS = ("step", "d_diff", "d_nd", "r1", "g_adv", "g_nd_adv", "l1_L", "l1_U", "cycle_L", "cycle_U",
                  "g_total", "lr_g", "lr_d", "seconds")
DOMAINS = ("L", "U")
OTHER = {"L": "U", "U": "L"}


# ---------------------------------------------------------------------------------------------------------------
# the optimisation step
# ---------------------------------------------------------------------------------------------------------------
def _cosine_factor(total_steps, lr0, enabled):
    def factor(step):
        if not enabled or total_steps <= 0:
            return 1.0
        eta = min(ETA_MIN, lr0) / lr0
        return eta + (1.0 - eta) * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return factor


def _params(modules):
    return [p for m in modules.values() for p in m.parameters()]


class SynDiffTrainer:
    """Optimisers, EMA and the SynDiff training step for one model (no files, no data).

    Parameters
    ----------
    model : SynDiff
        Trained in place (already on its device).
    config : SynDiffConfig
    total_steps : int
        Length of the cosine learning-rate schedule.
    world_size : int
        Number of data-parallel processes (gradients are averaged over them when > 1).

    Attributes
    ----------
    ema : SynDiff
        Copy of the model whose generators hold the exponential moving average.
    step : int
        Optimisation steps done.
    """

    def __init__(self, model, config, total_steps, world_size=1):
        self.model = model
        self.config = config
        self.world_size = int(world_size)
        self.step = 0
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        self.gens = model.generators()
        self.discs = model.discriminators()
        self.ema_gens = self.ema.generators()
        cfg = config
        self.opt_g = torch.optim.Adam(_params(self.gens), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(_params(self.discs), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        self.set_total_steps(total_steps)

    def set_total_steps(self, total_steps):
        """(Re)build the cosine schedules for a run of ``total_steps`` steps, at the current step."""
        self.total_steps = int(total_steps)
        cfg = self.config
        scheds = []
        for opt, lr0 in ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr0
                group.pop("initial_lr", None)
            factor = _cosine_factor(self.total_steps, lr0, cfg.cosine_decay)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            sched.last_epoch = self.step
            for group in opt.param_groups:
                group["lr"] = lr0 * factor(self.step)
            scheds.append(sched)
        self.sched_g, self.sched_d = scheds

    @property
    def lrs(self):
        return self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]

    # -- data parallel ---------------------------------------------------------------------------------------------
    def _average_gradients(self, params):
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def broadcast_from_rank0(self):
        """Copy rank 0's networks and EMA to every rank (call once before training when distributed)."""
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for module in (self.model, self.ema):
                for tensor in module.state_dict().values():
                    dist.broadcast(tensor, 0)

    # -- the step --------------------------------------------------------------------------------------------------
    def _pseudo_x0(self, X, x_tp1, t, cond_from_x):
        """Diffusive generator for target ``X``: x0 prediction from ``x_tp1`` and ``cond_from_x`` (``X`` in ``O``)."""
        z = torch.randn(x_tp1.shape[0], self.config.nz, device=x_tp1.device)
        return self.model.gen_diff[f"{OTHER[X]}2{X}"](torch.cat([x_tp1, cond_from_x], dim=1), t, z)

    def train_step(self, real_l, real_u):
        """One discriminator and one generator update on a batch of each domain.

        Parameters
        ----------
        real_l, real_u : torch.Tensor
            ``(B, 1, s, s)`` tiles in [-1, 1] on the model's device.

        Returns
        -------
        dict of str to float
            The losses (see :data:`METRIC_COLUMNS`).
        """
        cfg, model = self.config, self.model
        diffusion = model.diffusion
        reals = {"L": real_l, "U": real_u}
        batch = {X: reals[X].shape[0] for X in DOMAINS}
        T = cfg.num_timesteps
        device = real_l.device
        out = {}

        # ---- discriminators ----
        model.train()
        self.discs_requires_grad(True)
        self.opt_d.zero_grad(set_to_none=True)
        do_r1 = self.step % max(1, cfg.lazy_reg) == 0
        d_diff = d_nd = r1_total = 0.0
        with torch.no_grad():
            # nd[X]: real_X translated into the other domain by the non-diffusive generator
            nd = {X: model.gen_nd[f"{X}2{OTHER[X]}"](reals[X]) for X in DOMAINS}
        for X in DOMAINS:
            t = torch.randint(0, T, (batch[X],), device=device)
            x_t, x_tp1 = diffusion.q_sample_pairs(reals[X], t)
            x_t = x_t.detach().requires_grad_(do_r1)
            x_tp1 = x_tp1.detach()
            d_real = model.disc_diff[X](x_t, t, x_tp1).view(-1)
            loss = F.softplus(-d_real).mean()
            if do_r1:
                (grad,) = torch.autograd.grad(d_real.sum(), x_t, create_graph=True)
                r1 = grad.reshape(grad.shape[0], -1).pow(2).sum(1).mean()
                loss = loss + cfg.r1_gamma / 2 * r1
                r1_total += float(r1.detach())
            with torch.no_grad():
                x0 = self._pseudo_x0(X, x_tp1, t, nd[X])
                x_pos = diffusion.sample_posterior(x0, x_tp1, t)
            d_fake = model.disc_diff[X](x_pos, t, x_tp1).view(-1)
            loss_fake = F.softplus(d_fake).mean()
            loss_nd = (F.softplus(-model.disc_nd[X](reals[X])).mean()
                       + F.softplus(model.disc_nd[X](nd[OTHER[X]])).mean())
            (loss + loss_fake + loss_nd).backward()
            d_diff += float(loss.detach()) + float(loss_fake.detach())
            d_nd += float(loss_nd.detach())
        params_d = _params(self.discs)
        self._average_gradients(params_d)
        self.opt_d.step()
        out.update(d_diff=d_diff, d_nd=d_nd, r1=r1_total if do_r1 else float("nan"))

        # ---- generators ----
        self.discs_requires_grad(False)
        self.opt_g.zero_grad(set_to_none=True)
        # fake[X]: the other domain's real tiles translated into X; cycle[X]: real_X -> O -> X
        fake = {X: model.gen_nd[f"{OTHER[X]}2{X}"](reals[OTHER[X]]) for X in DOMAINS}
        cycle = {X: model.gen_nd[f"{OTHER[X]}2{X}"](fake[OTHER[X]]) for X in DOMAINS}
        g_adv = g_nd_adv = l1_sum = cyc_sum = 0.0
        for X in DOMAINS:
            t = torch.randint(0, T, (batch[X],), device=device)
            x_t, x_tp1 = diffusion.q_sample_pairs(reals[X], t)
            x_tp1 = x_tp1.detach()
            cond = fake[OTHER[X]] if cfg.nd_condition_grad else fake[OTHER[X]].detach()
            x0 = self._pseudo_x0(X, x_tp1, t, cond)
            x_pos = diffusion.sample_posterior(x0, x_tp1, t)
            adv = F.softplus(-model.disc_diff[X](x_pos, t, x_tp1).view(-1)).mean()
            nd_adv = F.softplus(-model.disc_nd[X](fake[X])).mean()
            l1 = F.l1_loss(x0, reals[X])
            cyc = F.l1_loss(cycle[X], reals[X])
            g_adv, g_nd_adv = g_adv + adv, g_nd_adv + nd_adv
            l1_sum, cyc_sum = l1_sum + l1, cyc_sum + cyc
            out[f"l1_{X}"], out[f"cycle_{X}"] = float(l1.detach()), float(cyc.detach())
        total = g_adv + g_nd_adv + cfg.lambda_l1 * (cyc_sum + l1_sum)
        total.backward()
        params_g = _params(self.gens)
        self._average_gradients(params_g)
        self.opt_g.step()
        self.discs_requires_grad(True)
        out.update(g_adv=float(g_adv.detach()), g_nd_adv=float(g_nd_adv.detach()), g_total=float(total.detach()))

        self.update_ema()
        self.sched_g.step()
        self.sched_d.step()
        self.step += 1
        return out

    def discs_requires_grad(self, flag):
        for module in self.discs.values():
            module.requires_grad_(flag)

    def ema_decay(self):
        """EMA decay at the current step: ``min(ema_decay, (1 + step) / (10 + step))``.

        The warm-up (as TensorFlow's ``ExponentialMovingAverage(num_updates=...)``) lets the average follow the
        fast early changes, so that the models scored and saved early in a run are not the initial weights; after
        about ``10 / (1 - ema_decay)`` steps it is SynDiff's constant decay.
        """
        return min(self.config.ema_decay, (1.0 + self.step) / (10.0 + self.step))

    @torch.no_grad()
    def update_ema(self):
        """``ema = decay * ema + (1 - decay) * weights`` for the generators' parameters; buffers copied."""
        weight = 1.0 - self.ema_decay()
        for name, gen in self.gens.items():
            ema_gen = self.ema_gens[name]
            for p_ema, p in zip(ema_gen.parameters(), gen.parameters()):
                p_ema.lerp_(p.detach(), weight)
            for b_ema, b in zip(ema_gen.buffers(), gen.buffers()):
                b_ema.copy_(b)

    # -- state -----------------------------------------------------------------------------------------------------
    def state_dict(self):
        return {
            "step": self.step,
            "total_steps": self.total_steps,
            "model": self.model.state_dict(),
            "ema": {name: m.state_dict() for name, m in self.ema_gens.items()},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
        }

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        for name, module in self.ema_gens.items():
            module.load_state_dict(state["ema"][name])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])


# ---------------------------------------------------------------------------------------------------------------
# RNG states (all of them, per rank)
# ---------------------------------------------------------------------------------------------------------------
def _rng_state(samplers):
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "samplers": {k: s.state_dict() for k, s in samplers.items()},
    }
    return state


def _set_rng_state(state, samplers):
    py = state["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    for k, s in samplers.items():
        s.load_state_dict(state["samplers"][k])


def _seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------------


def load_checkpoint(path):
    """Read a training checkpoint (tensors on the CPU)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def recover_model_dir(folder):
    """Finish a swap of :func:`save_model_dir` that a killed run interrupted: ``<folder>.old`` back to ``folder``
    when ``folder`` is missing. Returns True when it did."""
    folder = Path(folder)
    old = folder.with_name(folder.name + ".old")
    if not folder.exists() and old.is_dir():
        os.replace(old, folder)
        return True
    return False


def save_model_dir(model, folder, extra):
    """Save ``model``'s generators as float16 into ``folder`` (``save_pretrained``), replacing it atomically.

    The new model is written into ``<folder>.tmp``; the old folder is renamed to ``<folder>.old``, the new one
    into place, and ``.old`` removed. Between the two renames only ``.old`` exists: readers fall back to it
    (:func:`ads_synth.translation.translate.load_translation_model`) and the next save or resume restores it
    (:func:`recover_model_dir`).
    """
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    old = folder.with_name(folder.name + ".old")
    recover_model_dir(folder)
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    model.save_pretrained(tmp, dtype=torch.float16, extra=extra, generators_only=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old)


def _write_json(path, data):
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# options and the run
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TrainOptions:
    """What ``ads-synth translation train`` asks for.

    Attributes
    ----------
    source, target : list of str
        Image files / folders / BIDS / nnU-Net datasets of the labeled (L) and unlabeled (U) domain. Labels are
        never read.
    out : str
        Run folder.
    preset : str
        SynDiff preset (``tiny``, ``compact``, ``paper``).
    scale : float
        Magnification of L on top of U's pixel size (see :mod:`ads_synth.translation.tiles`).
    steps : int or None
        Total optimisation steps (length of the cosine schedule). None: :data:`DEFAULT_SCHEDULE`, or the run's
        value when resuming.
    checkpoint_every, eval_every : int or None
        Steps between checkpoints / scorings (``eval_every=0``: never score); None as for ``steps``.
    seed : int
    batch_size : int or None
        Overrides the preset's batch size (per process).
    tile : int or None
        Overrides the preset's training tile side (``image_size``), e.g. when the images are smaller than it on
        their working grid; a multiple of the networks' down-sampling.
    channels : int or None
        Overrides the preset's base channels of the diffusive generator (``ncsnpp.ch``).
    source_pixel_size, target_pixel_size : float or None
        Micrometres per pixel for images without their own pixel size.
    source_name, target_name : str or None
        Modality names stored with the model (e.g. ``TEM``, ``SEM``).
    eval_tiles : int
        Held-back tiles per domain used for scoring.
    device : str or None
    progress : bool
        Show a tqdm bar.
    time_limit_s : float or None
        Fit the run into this many seconds of training (scorings included): after
        :data:`CALIBRATION_STEPS` steps the step count is set from the measured seconds per step
        (``steps`` is then the planned count; :mod:`ads_synth.calibration`) and the
        scoring and checkpoint intervals scale with it, so the run keeps as many of each. The
        calibrated schedule is stored in the checkpoint and a resumed run keeps it. None: ``steps`` as
        given.
    keep_snapshots : bool
        Also save the EMA model at every scoring as ``snapshots/step_XXXXXX/`` (float16, a few MB each), so that a
        caller can choose among them by more than the cycle score (``ads-synth family train`` checks their
        contrast, :mod:`ads_synth.family.look`).
    """

    source: list = field(default_factory=list)
    target: list = field(default_factory=list)
    out: str = ""
    preset: str = DEFAULT_PRESET
    scale: float = 1.0
    steps: int | None = None
    checkpoint_every: int | None = None
    eval_every: int | None = None
    seed: int = 0
    batch_size: int | None = None
    tile: int | None = None
    source_pixel_size: float | None = None
    target_pixel_size: float | None = None
    source_name: str | None = None
    target_name: str | None = None
    eval_tiles: int = 8
    device: str | None = None
    progress: bool = True
    channels: int | None = None
    time_limit_s: float | None = None
    keep_snapshots: bool = False

    #: Options a resumed run takes from its config.json (the others may change between sessions).
    FIXED = ("source", "target", "preset", "scale", "seed", "batch_size", "tile", "source_pixel_size",
             "target_pixel_size", "source_name", "target_name", "eval_tiles", "channels")


def config_from_options(opts):
    """The SynDiffConfig a new run of ``opts`` trains: the preset with the ``batch_size``, ``tile`` and
    ``channels`` overrides (what a card's reproduce command rebuilds). InputError for an invalid override."""
    config = get_preset(opts.preset)
    if opts.batch_size is not None:
        config = dataclasses.replace(config, batch_size=int(opts.batch_size))
    if opts.channels is not None:
        if int(opts.channels) < 1:
            raise InputError(f"--channels {opts.channels}: must be a positive number of channels.")
        config = dataclasses.replace(config, ncsnpp=dataclasses.replace(config.ncsnpp, ch=int(opts.channels)))
    if opts.tile is not None:
        multiple = config.training_size_multiple
        if int(opts.tile) < multiple or int(opts.tile) % multiple:
            raise InputError(f"--tile {opts.tile}: must be a positive multiple of {multiple} for the "
                             f"{opts.preset} preset.")
        config = dataclasses.replace(config, image_size=int(opts.tile))
    return config


#: Defaults of the options that a resumed run may change (None in TrainOptions: the run's value, or these).
DEFAULT_SCHEDULE = {"steps": 10000, "checkpoint_every": 500, "eval_every": 500}

#: The training's clock (seconds); tests replace it.
_clock = time.perf_counter

#: Steps timed (after the first, which pays for warm-up) before a run with ``time_limit_s`` sets its length.
CALIBRATION_STEPS = 10


def calibrated_schedule(step, seconds_now, seconds_per_step, time_limit_s, planned, eval_every,
                        checkpoint_every):
    """The schedule that fits the rest of ``time_limit_s`` at the measured ``seconds_per_step``
    (:func:`ads_synth.calibration.fitted_count`).

    Parameters
    ----------
    step : int
        Steps done.
    seconds_now : float
        Training seconds spent so far (all sessions).
    seconds_per_step : float
        Measured cost of one step.
    time_limit_s : float
        Seconds the whole training may take.
    planned, eval_every, checkpoint_every : int
        The planned step count and intervals.

    Returns
    -------
    dict
        ``steps``, ``eval_every``, ``checkpoint_every`` (the intervals scaled like the step count, so the run
        scores and checkpoints as often as planned) and the measured ``seconds_per_step``.
    """
    steps = fitted_count(step, seconds_now, seconds_per_step, time_limit_s, planned)
    ratio = steps / max(1, planned)

    def scaled(every):
        return int(every) and max(1, int(round(int(every) * ratio)))

    return {"steps": steps, "eval_every": scaled(eval_every), "checkpoint_every": scaled(checkpoint_every),
            "seconds_per_step": float(seconds_per_step)}


def _distributed():
    """``(rank, world_size, local_rank)`` from torchrun's environment; ``(0, 1, 0)`` for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def _init_process_group(device):
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def _find(paths, side):
    from ads_synth.data.datasets import find_samples

    if not paths:
        raise InputError(f"no {side} images given; pass --{side} PATH (a file, folder, BIDS or nnU-Net dataset).")
    samples, seen = [], set()
    for p in paths:
        for s in find_samples(p):
            key = str(Path(s.image).resolve())
            if key not in seen:
                seen.add(key)
                samples.append(s)
    return samples


def _check_options(opts):
    for name in ("steps", "checkpoint_every"):
        if int(getattr(opts, name)) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(opts, name)}.")
    if int(opts.eval_every) < 0 or int(opts.eval_tiles) < 1:
        raise InputError("--eval-every must be >= 0 and the number of scoring tiles >= 1.")
    if opts.batch_size is not None and int(opts.batch_size) < 1:
        raise InputError(f"--batch-size must be at least 1, got {opts.batch_size}.")


def prepare_run(opts, resume=False):
    """Validate everything and load the data; nothing is written.

    Returns
    -------
    dict
        ``config`` (SynDiffConfig), ``opts`` (the effective options), ``domains`` (train DomainImages per
        domain), ``eval`` (held-back DomainImages per domain), ``pixel_size``, ``data`` (names and files).

    Raises
    ------
    InputError
        Bad options, a run folder in the way (or missing with ``resume``), missing data or pixel sizes.
    """
    run_dir = Path(opts.out)
    if not str(opts.out):
        raise InputError("no run folder given; pass --out RUN_DIR.")
    if opts.batch_size is not None and int(opts.batch_size) < 1:
        raise InputError(f"--batch-size must be at least 1, got {opts.batch_size}.")
    config_path = run_dir / CONFIG_NAME
    if resume:
        if not config_path.is_file():
            raise InputError(f"{config_path}: not found, nothing to resume; start the run without --resume.")
        stored = json.loads(config_path.read_text(encoding="utf-8"))
        if stored.get("format") != RUN_FORMAT:
            raise InputError(f"{config_path}: not an ads-synth translation run; choose another --out.")
        for name in TrainOptions.FIXED:
            given = getattr(opts, name)
            if name in ("source", "target") and given and ([os.path.abspath(p) for p in given]
                                                           != [os.path.abspath(p) for p in stored["options"][name]]):
                raise InputError(f"--{name} differs from the run's ({stored['options'][name]}); a resumed run "
                                 f"keeps its data: leave --{name} out.")
        fixed = {name: stored["options"].get(name) for name in TrainOptions.FIXED}
        fixed.update({name: stored["options"][name] for name in DEFAULT_SCHEDULE if getattr(opts, name) is None})
        opts = dataclasses.replace(opts, **fixed)
        config = SynDiffConfig.from_dict(stored["syndiff"])
    else:
        if config_path.exists() or (run_dir / CHECKPOINT_NAME).exists():
            raise InputError(f"{run_dir}: already holds a training run; pass --resume to continue it, or choose "
                             "another --out.")
        if run_dir.exists() and not run_dir.is_dir():
            raise InputError(f"{run_dir}: is a file; choose a folder for --out.")
        config = config_from_options(opts)
        opts = dataclasses.replace(opts, **{name: value for name, value in DEFAULT_SCHEDULE.items()
                                             if getattr(opts, name) is None})
        # absolute data paths in the run's config: --resume works from any working folder
        opts = dataclasses.replace(opts, source=[os.path.abspath(p) for p in opts.source or []],
                                   target=[os.path.abspath(p) for p in opts.target or []])
    _check_options(opts)

    samples = {"L": _find(opts.source, "source"), "U": _find(opts.target, "target")}
    files = {X: {str(Path(s.image).resolve()) for s in samples[X]} for X in DOMAINS}
    shared = files["L"] & files["U"]
    if shared:
        raise InputError(f"{sorted(shared)[0]}: given as both --source (labeled) and --target (unlabeled) image "
                         f"({len(shared)} image(s) in both); give each modality its own images.")
    sizes = {
        "L": sample_pixel_sizes(samples["L"], opts.source_pixel_size, "--source-pixel-size"),
        "U": sample_pixel_sizes(samples["U"], opts.target_pixel_size, "--target-pixel-size"),
    }
    work_l, work_u = working_pixel_sizes(sizes["L"], sizes["U"], opts.scale)
    work = {"L": work_l, "U": work_u}
    size_of = {X: {str(s.image): px for s, px in zip(samples[X], sizes[X])} for X in DOMAINS}
    domains, held, data = {}, {}, {}
    for X in DOMAINS:
        if resume:  # the run's own split
            by_name = {s.name: s for s in samples[X]}
            names = [d["name"] for d in stored["data"][X]["train"]] + stored["data"][X]["held_back"]
            missing = [name for name in names if name not in by_name]
            if missing:
                raise InputError(f"{config_path}: the {X} image {missing[0]} is gone since the run started; restore "
                                 "it or start a new run.")
            train_s = [by_name[d["name"]] for d in stored["data"][X]["train"]]
            held_s = [by_name[name] for name in stored["data"][X]["held_back"]]
        else:
            train_s, held_s = holdout_split(samples[X])
        px = size_of[X]
        domains[X] = load_domain(train_s, [px[str(s.image)] for s in train_s], work[X], min_side=config.image_size)
        held[X] = (domains[X] if held_s == train_s else
                   load_domain(held_s, [px[str(s.image)] for s in held_s], work[X], min_side=config.image_size))
        data[X] = {
            "train": [{"name": s.name, "image": str(s.image), "pixel_size": px[str(s.image)]} for s in train_s],
            "held_back": [s.name for s in held_s],
        }
    notes = []
    for X, side in (("L", "source"), ("U", "target")):
        if domains[X].padded:
            notes.append(
                f"{len(domains[X].padded)} of {len(domains[X].images)} {side} images are smaller than the "
                f"{config.image_size} px training tile at {work[X]:.4g} um/px and are padded by reflection (mirrored "
                f"content); a smaller --tile or --scale avoids it.")
    return {"config": config, "opts": opts, "domains": domains, "eval": held, "pixel_size": work, "data": data,
            "notes": notes}


def _extra(prep, step, scores=None):
    opts = prep["opts"]
    extra = {
        "pixel_size": dict(prep["pixel_size"]),
        "modalities": {"L": opts.source_name, "U": opts.target_name},
        "scale": float(opts.scale),
        "step": int(step),
        "data": {X: [d["name"] for d in prep["data"][X]["train"]] for X in DOMAINS},
    }
    if scores is not None:
        extra["scores"] = {k: float(v) for k, v in scores.items()}
    return extra


def _gather(obj, world):
    if world <= 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def train(opts, resume=False, _stop_after=None):
    """Train (or, with ``resume``, continue) a SynDiff translation model; see the module docstring.

    Parameters
    ----------
    opts : TrainOptions
    resume : bool
        Continue the run in ``opts.out`` from its checkpoint (from step 0 with its stored config when it has
        none yet).
    _stop_after : int, optional
        For tests: return after this step without the final checkpoint, as a killed run would.

    Returns
    -------
    SynDiffTrainer
        The trainer at the end (``.model``, ``.ema``, ``.step``).
    """

    rank, world, local_rank = _distributed()
    device = resolve_device(opts.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    own_group = world > 1 and _init_process_group(device)
    try:
        return _train(opts, resume, _stop_after, rank, world, device)
    finally:
        if own_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _apply_schedule(opts, schedule, trainer):
    """``opts`` with the calibrated step count and intervals; the trainer's cosine schedule set to its length."""
    opts = dataclasses.replace(opts, steps=int(schedule["steps"]), eval_every=int(schedule["eval_every"]),
                               checkpoint_every=int(schedule["checkpoint_every"]))
    trainer.set_total_steps(opts.steps)
    return opts


def _stop_if_not_finite(losses, step, world, ckpt_path, saved_step, device="cpu"):
    """NonFiniteError (on every rank) when a loss of this step is NaN or infinite; nothing is saved after it.

    ``r1`` is NaN by design on steps without the R1 penalty and is not checked.
    """
    bad = [k for k, v in losses.items() if k != "r1" and not math.isfinite(v)]
    flag = float(bool(bad))
    if world > 1:
        import torch.distributed as dist

        t = torch.tensor([flag], device=device)  # every rank stops together (NCCL needs the CUDA device)
        dist.all_reduce(t)
        flag = float(t.item())
    if not flag:
        return
    what = f"the {bad[0]} loss is {losses[bad[0]]}" if bad else "a loss on another process is not finite"
    kept = (f"{ckpt_path} (step {saved_step}) and best/ are kept" if saved_step is not None
            else "no checkpoint had been written yet")
    raise NonFiniteError(f"step {step}: {what}: training diverged and stopped without saving; {kept}. Lower the "
                         "learning rates (lr_g, lr_d) or check the images, then start again or --resume.")


def _barrier(world):
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _train(opts, resume, _stop_after, rank, world, device):
    from ads_synth.translation.model import SynDiff

    prep = prepare_run(opts, resume=resume)
    opts, config = prep["opts"], prep["config"]
    _barrier(world)  # every rank has checked the run folder before rank 0 writes into it
    run_dir = Path(opts.out)
    ckpt_path = run_dir / CHECKPOINT_NAME
    main = rank == 0

    # samplers: each rank its own stream; the held-back tiles are the same for all
    samplers = {X: TileSampler(prep["domains"][X].images, config.image_size, seed=[opts.seed, rank, i])
                for i, X in enumerate(DOMAINS)}
    eval_tiles = {X: torch.from_numpy(TileSampler(prep["eval"][X].images, config.image_size, seed=[opts.seed, 99, i])
                                      .sample(opts.eval_tiles)).to(device)
                  for i, X in enumerate(DOMAINS)}

    _seed_everything(opts.seed)
    model = SynDiff(config).to(device)
    trainer = SynDiffTrainer(model, config, opts.steps, world_size=world)
    best = {"score": -math.inf, "step": -1}
    elapsed0 = 0.0
    schedule = None  # the calibrated schedule of a run with time_limit_s, once measured
    _seed_everything(opts.seed * 1000 + 1 + rank)

    if main:
        for note in prep["notes"]:
            print(f"ads-synth: warning: {note}", file=sys.stderr)
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(run_dir)  # e.g. .checkpoint.pt.<pid>.*.tmp of a killed run
        for sub in ("best", "last"):
            recover_model_dir(run_dir / sub)
        (run_dir / "samples").mkdir(exist_ok=True)
        if not resume:
            _write_json(run_dir / CONFIG_NAME, {
                "format": RUN_FORMAT,
                "syndiff": config.to_dict(),
                "options": {k: (list(map(str, v)) if isinstance(v, (list, tuple)) else v)
                            for k, v in dataclasses.asdict(opts).items()},
                "pixel_size": prep["pixel_size"],
                "data": prep["data"],
                "world_size": world,
            })
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        trainer.load_state_dict(state["trainer"])  # the cosine schedule keeps the length of this session's --steps
        if opts.time_limit_s is not None and state.get("schedule"):  # ... unless it was calibrated: kept
            schedule = dict(state["schedule"])
            opts = _apply_schedule(opts, schedule, trainer)
        best = dict(state["best"])
        elapsed0 = float(state["elapsed"])
        rng = state["rng"]
        if len(rng) == world:
            _set_rng_state(rng[rank], samplers)
        elif main:
            print(f"ads-synth: the checkpoint was written by {len(rng)} processes, not {world}: the tile and noise "
                  "streams start anew (training continues, not bitwise as before).")
    elif resume and main:
        for name in ("metrics.csv", "scores.csv"):
            scoring.truncate_rows(run_dir / name, 0)
    trainer.broadcast_from_rank0()
    if main and resume:
        scoring.truncate_rows(run_dir / "metrics.csv", trainer.step)
        scoring.truncate_rows(run_dir / "scores.csv", trainer.step)

    t0 = _clock()

    def seconds():
        return elapsed0 + _clock() - t0

    def evaluate():
        scores, examples = scoring.evaluate_cycles(trainer.ema, eval_tiles["L"], eval_tiles["U"], seed=opts.seed,
                                                   batch_size=max(1, config.batch_size))
        n = trainer.step
        scoring.append_row(run_dir / "scores.csv", {"step": n, **scores, "seconds": seconds()},
                           scoring.SCORE_COLUMNS)
        scoring.save_sample_grid(examples, run_dir / "samples" / f"step_{n:06d}.png",
                                 title=f"step {n}  cycle SSIM L {scores['ssim_L']:.3f}  U {scores['ssim_U']:.3f}")
        scoring.plot_curves(run_dir / "metrics.csv", run_dir / "scores.csv", run_dir / "curves.png")
        if opts.keep_snapshots:
            save_model_dir(trainer.ema, run_dir / SNAPSHOTS / f"step_{n:06d}", _extra(prep, n, scores))
        if scores["score"] > best["score"]:
            best.update(score=float(scores["score"]), step=n)
            save_model_dir(trainer.ema, run_dir / "best", _extra(prep, n, scores))
        return scores

    saved = {"step": trainer.step if resume and ckpt_path.is_file() else None}

    def checkpoint():
        saved["step"] = trainer.step
        rng = _gather(_rng_state(samplers), world)
        if not main:
            return
        atomic_torch_save({
            "format": RUN_FORMAT,
            "trainer": trainer.state_dict(),
            "rng": rng,
            "best": best,
            "elapsed": seconds(),
            "config": config.to_dict(),
            "extra": _extra(prep, trainer.step),
            "schedule": schedule,
        }, ckpt_path)
        save_model_dir(trainer.ema, run_dir / "last", _extra(prep, trainer.step))

    if main and opts.eval_every and trainer.step == 0 and not (run_dir / "scores.csv").exists():
        evaluate()  # the untrained baseline

    bar = None
    if main and opts.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=opts.steps, initial=trainer.step, desc="SynDiff", unit="step", dynamic_ncols=True)
    timing = {"step": None, "t": None}  # where this session's timed steps start
    try:
        while trainer.step < opts.steps:
            real_l = torch.from_numpy(samplers["L"].sample(config.batch_size)).to(device)
            real_u = torch.from_numpy(samplers["U"].sample(config.batch_size)).to(device)
            losses = trainer.train_step(real_l, real_u)
            n = trainer.step
            _stop_if_not_finite(losses, n, world, ckpt_path, saved["step"], device)
            if main:
                lr_g, lr_d = trainer.lrs
                scoring.append_row(run_dir / "metrics.csv",
                                   {"step": n, **losses, "lr_g": lr_g, "lr_d": lr_d, "seconds": seconds()},
                                   METRIC_COLUMNS)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(cyc=f"{losses['cycle_L'] + losses['cycle_U']:.3f}",
                                    l1=f"{losses['l1_L'] + losses['l1_U']:.3f}", g=f"{losses['g_total']:.2f}",
                                    d=f"{losses['d_diff']:.2f}", refresh=False)
            if opts.time_limit_s is not None and schedule is None:
                if timing["step"] is None:
                    timing.update(step=n, t=seconds())
                elif n - timing["step"] >= CALIBRATION_STEPS:
                    rate = (seconds() - timing["t"]) / (n - timing["step"])
                    schedule = _gather(calibrated_schedule(
                        n, seconds(), rate, opts.time_limit_s, opts.steps, opts.eval_every or 0,
                        opts.checkpoint_every), world)[0]  # rank 0's measure, on every rank
                    opts = _apply_schedule(opts, schedule, trainer)
                    if bar is not None:
                        bar.total = opts.steps
                        bar.refresh()
            if _stop_after is not None and n >= _stop_after:
                return trainer
            if main and opts.eval_every and (n % opts.eval_every == 0 or n == opts.steps):
                evaluate()
            if n % opts.checkpoint_every == 0 or n == opts.steps:
                checkpoint()
    finally:
        if bar is not None:
            bar.close()
    # every rank waits for rank 0's last checkpoint: a rank that left first made gloo's destroy_process_group
    # hang on the slower one (seen with fsynced checkpoints on a loaded machine)
    _barrier(world)
    return trainer
