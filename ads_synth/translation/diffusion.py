"""The diffusion process of SynDiff (denoising-diffusion-GAN): a few large steps of a variance-preserving SDE.

Schedule, forward sampling ``q(x_t | x_0)`` / ``q(x_{t+1} | x_t)``, posterior sampling ``q(x_t | x_{t+1}, x_0)`` and
the reverse chain, as ``get_sigma_schedule``, ``Diffusion_Coefficients``, ``Posterior_Coefficients``,
``q_sample_pairs``, ``sample_posterior`` and ``sample_from_model`` of denoising-diffusion-GAN / SynDiff.

Index conventions (theirs): training draws ``t`` in ``[0, T)``; ``x_t`` is diffused with the cumulative
coefficients at index ``t`` (index 0 is almost clean: the schedule starts at ``eps_small``), ``x_{t+1}`` adds one
more step; the generator sees ``(x_{t+1}, t)`` and the posterior at ``t`` returns ``x_t``.
"""

import numpy as np
import torch
from torch import nn

EPS_SMALL = 1e-3


def vp_variance(t, beta_min, beta_max):
    """Marginal variance ``1 - alpha_bar(t)`` of the VP SDE with linear beta from ``beta_min`` to ``beta_max``."""
    log_mean_coeff = -0.25 * t ** 2 * (beta_max - beta_min) - 0.5 * t * beta_min
    return 1.0 - np.exp(2.0 * log_mean_coeff)


def sigma_schedule(num_timesteps, beta_min, beta_max):
    """Per-step ``(sigmas, a_s, betas)``, each of length ``num_timesteps + 1`` (``betas[0] = 1e-8``).

    ``t = k / T * (1 - eps) + eps`` for ``k = 0..T``; ``alpha_bar = 1 - var(t)``;
    ``beta_k = 1 - alpha_bar_k / alpha_bar_{k-1}``; ``sigma = sqrt(beta)``; ``a = sqrt(1 - beta)``.
    Betas are rounded to float32 first, as the reference does.
    """
    t = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps * (1.0 - EPS_SMALL) + EPS_SMALL
    alpha_bars = 1.0 - vp_variance(t, beta_min, beta_max)
    betas = np.concatenate([[1e-8], 1.0 - alpha_bars[1:] / alpha_bars[:-1]]).astype(np.float32)
    return np.sqrt(betas), np.sqrt(1.0 - betas), betas


def _gather(coeffs, t, ndim):
    """``coeffs[t]`` shaped ``(B, 1, 1, ...)`` to broadcast over a batch of ``ndim``-d tensors."""
    return coeffs.gather(0, t).reshape(-1, *([1] * (ndim - 1)))


class DiffusionProcess(nn.Module):
    """Coefficients as buffers (no parameters; they follow ``.to(device)``; not saved in state dicts).

    Parameters
    ----------
    num_timesteps : int
        Number of (large) diffusion steps ``T``.
    beta_min, beta_max : float
        VP schedule limits.
    """

    def __init__(self, num_timesteps, beta_min, beta_max):
        super().__init__()
        self.num_timesteps = num_timesteps
        sigmas, a_s, betas = sigma_schedule(num_timesteps, beta_min, beta_max)
        a_s_cum = np.cumprod(a_s.astype(np.float64))
        # posterior q(x_t | x_{t+1}, x_0), indexed by t in [0, T)
        b = betas[1:].astype(np.float64)
        alphas_cumprod = np.cumprod(1.0 - b)
        alphas_cumprod_prev = np.concatenate([[1.0], alphas_cumprod[:-1]])
        post_var = b * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        buffers = {
            "sigmas": sigmas,
            "a_s": a_s,
            "a_s_cum": a_s_cum,
            "sigmas_cum": np.sqrt(1.0 - a_s_cum ** 2),
            "posterior_mean_coef1": b * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - b) / (1.0 - alphas_cumprod),
            "posterior_std": np.sqrt(np.maximum(post_var, 1e-20)),  # exp(0.5 * clipped log variance)
        }
        for name, value in buffers.items():
            self.register_buffer(name, torch.as_tensor(np.asarray(value, dtype=np.float32)), persistent=False)

    def _check_t(self, t, batch):
        if t.dtype != torch.long or t.shape != (batch,):
            raise ValueError(f"t must be a long tensor of shape ({batch},), got {t.dtype} {tuple(t.shape)}")

    def q_sample(self, x0, t, noise=None):
        """``x_t ~ q(x_t | x_0)`` at cumulative index ``t`` (``(B,)`` long in ``[0, T]``)."""
        self._check_t(t, x0.shape[0])
        noise = torch.randn_like(x0) if noise is None else noise
        return _gather(self.a_s_cum, t, x0.ndim) * x0 + _gather(self.sigmas_cum, t, x0.ndim) * noise

    def q_sample_pairs(self, x0, t, noise=None):
        """A training pair ``(x_t, x_{t+1})`` diffused from ``x0``.

        Parameters
        ----------
        x0 : torch.Tensor
            ``(B, C, H, W)`` clean images in [-1, 1].
        t : torch.Tensor
            ``(B,)`` long in ``[0, T)``.
        noise : tuple of torch.Tensor, optional
            ``(noise_t, noise_tp1)`` standard normal draws (default: fresh ``randn_like``).

        Returns
        -------
        tuple of torch.Tensor
            ``x_t = a_cum[t] x0 + s_cum[t] n1`` and ``x_{t+1} = a[t+1] x_t + s[t+1] n2``.
        """
        n_t, n_tp1 = (None, None) if noise is None else noise
        x_t = self.q_sample(x0, t, n_t)
        n_tp1 = torch.randn_like(x0) if n_tp1 is None else n_tp1
        x_tp1 = _gather(self.a_s, t + 1, x0.ndim) * x_t + _gather(self.sigmas, t + 1, x0.ndim) * n_tp1
        return x_t, x_tp1

    def posterior_mean(self, x0_pred, x_tp1, t):
        """Mean of ``q(x_t | x_{t+1}, x_0)``: ``coef1[t] x0 + coef2[t] x_{t+1}`` (at ``t = 0``: exactly ``x0``)."""
        self._check_t(t, x0_pred.shape[0])
        return (_gather(self.posterior_mean_coef1, t, x0_pred.ndim) * x0_pred
                + _gather(self.posterior_mean_coef2, t, x0_pred.ndim) * x_tp1)

    def sample_posterior(self, x0_pred, x_tp1, t, noise=None):
        """``x_t ~ q(x_t | x_{t+1}, x_0 = x0_pred)``; no noise where ``t == 0``.

        Parameters
        ----------
        x0_pred, x_tp1 : torch.Tensor
            ``(B, C, H, W)``.
        t : torch.Tensor
            ``(B,)`` long in ``[0, T)``.
        noise : torch.Tensor, optional
            Standard normal draw (default: fresh ``randn_like``).

        Returns
        -------
        torch.Tensor
            ``x_t``.
        """
        mean = self.posterior_mean(x0_pred, x_tp1, t)
        noise = torch.randn_like(x_tp1) if noise is None else noise
        nonzero = (t != 0).to(x_tp1.dtype).reshape(-1, *([1] * (x_tp1.ndim - 1)))
        return mean + nonzero * _gather(self.posterior_std, t, x_tp1.ndim) * noise

    def sample(self, generator, condition, nz, generator_rng=None):
        """Run the reverse chain: ``x_T ~ N(0, I)``, then ``T`` generator calls with a fresh ``z`` each.

        Parameters
        ----------
        generator : callable
            ``generator(cat(x_{t+1}, condition), t, z) -> x0`` prediction.
        condition : torch.Tensor
            ``(B, 1, H, W)`` conditioning image.
        nz : int
            Latent size.
        generator_rng : torch.Generator or sequence of torch.Generator, optional
            Source of every random draw (initial noise, latents, posterior noise), for reproducible output. A
            sequence gives one generator per sample: each sample's draws then come from its own generator only, so
            its output does not depend on the other samples of the batch (nor on how tiles are batched).

        Returns
        -------
        torch.Tensor
            ``x_0`` sample ``(B, 1, H, W)``.
        """
        b = condition.shape[0]
        kw = dict(device=condition.device, dtype=condition.dtype)
        per_sample = isinstance(generator_rng, (list, tuple))
        if per_sample and len(generator_rng) != b:
            raise ValueError(f"{len(generator_rng)} generators for a batch of {b}")

        def randn(shape):  # (B, *shape)
            if per_sample:
                return torch.stack([torch.randn(shape, generator=g, **kw) for g in generator_rng])
            return torch.randn((b, *shape), generator=generator_rng, **kw)

        x = randn(condition.shape[1:])
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((b,), i, dtype=torch.long, device=condition.device)
            z = randn((nz,))
            x0 = generator(torch.cat([x, condition], dim=1), t, z)
            noise = randn(x.shape[1:]) if i > 0 else torch.zeros_like(x)
            x = self.sample_posterior(x0, x, t, noise)
        return x
