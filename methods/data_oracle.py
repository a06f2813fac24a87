"""The ideal denoiser of a dataset: an exact score at image scale, with no network (model `data-oracle`).

For the empirical distribution of n training images {y_i} (model space, [-1, 1]) the noised density is
p_sigma(x) = (1/n) sum_i N(x; y_i, sigma^2 I), so the denoiser is exact:

code            maths
D(x, sigma)     E[x_0 | x_sigma = x] = sum_i w_i y_i,  w = softmax_i(-||x - y_i||^2 / (2 sigma^2))
                computed batched as one matrix product of distances (||x||^2 - 2 x.y + ||y||^2) and a
                logsumexp-stable softmax, in float64 (at sigma = 0.002 the logits differ by ~1e5)
eps(x_t, t)     the same model on DDPM's schedule (as `oracle`): sigma = sqrt((1 - abar) / abar),
                eps = (x_t - sqrt(abar) D(x_t / sqrt(abar), sigma)) / sqrt(1 - abar)

An exact solver from any noise lands on one of the n training images (the ideal denoiser memorises), so a
sample's distance to its nearest training image (`nn_dist`) measures a solver's error at image
dimension with no network in the way. The training images are the first `n_images` of the training split.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from methods.base import Model, ParamGroup
from methods.prediction import Prediction, linear_schedule
from methods.registry import register_model
from methods.sigma import Denoiser, denoiser_of


@dataclasses.dataclass(frozen=True)
class DataOracleConfig:
    n_images: int = 1000  # training images the empirical distribution holds (the first n of the split)
    T: int = 1000  # DDPM's schedule for the eps view (integer-timestep samplers), as the mixture oracle's
    beta_start: float = 1e-4
    beta_end: float = 0.02


def sq_distances(images: torch.Tensor, sq_norms: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """||x_b - y_i||^2 for a batch x (B, ...) against the images (n, D), as one matrix product, float64."""
    xf = x.reshape(x.shape[0], -1).double().to(images.device)
    return (xf.pow(2).sum(1, keepdim=True) - 2 * xf @ images.T + sq_norms).clamp_min(0)


def ideal_denoise(images: torch.Tensor, sq_norms: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """sum_i softmax_i(-||x - y_i||^2 / (2 sigma^2)) y_i for a batch x (B, ...) and per-sample sigma, float64."""
    d2 = sq_distances(images, sq_norms, x)  # (B, n)
    w = torch.softmax(-d2 / (2 * sigma.double().to(x.device).reshape(-1, 1) ** 2), dim=1)
    return (w @ images).reshape(x.shape).to(x.dtype)


class IdealDenoiser(nn.Module):
    """D(x, sigma) of the empirical distribution (a module, so NFE hooks count it)."""

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.register_buffer("images", images.reshape(len(images), -1).double())
        self.register_buffer("sq_norms", self.images.pow(2).sum(1).reshape(1, -1))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return ideal_denoise(self.images, self.sq_norms, x, sigma)


class IdealEps(nn.Module):
    """eps*(x_t, t) on DDPM's schedule from the same denoiser (one NFE per call, counted here only)."""

    def __init__(self, denoiser: IdealDenoiser, schedule):
        super().__init__()
        self.d = denoiser
        self.schedule = schedule

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = self.schedule.alpha_bar(torch.as_tensor(t).reshape(-1)).to(x.device)
        abar = abar.expand(x.shape[0]) if abar.numel() == 1 else abar
        a = abar.sqrt().reshape(-1, *([1] * (x.dim() - 1)))
        sigma = ((1 - abar) / abar).sqrt()
        x0 = ideal_denoise(self.d.images, self.d.sq_norms, x.double() / a, sigma).double()
        return ((x.double() - a * x0) / (1 - a**2).sqrt()).to(x.dtype)


@register_model("data-oracle")
class DataOracle(Model):
    """No training: the exact denoiser of the first n training images."""

    Config = DataOracleConfig
    trainable = False
    needs_images = True
    family = "exact"
    native_sampler = "ddim"
    summary = "ideal denoiser of n training images: an exact score at image scale (no weights, no training)"

    def __init__(self, cfg: DataOracleConfig, data_shape: tuple[int, ...], *, images: torch.Tensor | None = None):
        super().__init__(cfg, data_shape)
        self.schedule = linear_schedule(cfg.T, cfg.beta_start, cfg.beta_end)
        images = torch.zeros(1, *self.data_shape) if images is None else images
        self.exact_d = IdealDenoiser(images)
        self.eps = IdealEps(self.exact_d, self.schedule)

    @classmethod
    def check_config(cls, cfg: DataOracleConfig) -> None:
        if not 1 <= cfg.n_images <= 100_000:
            raise ValueError(f"data-oracle: model.n_images must be in 1..100000, got {cfg.n_images}")
        if not 0 < cfg.beta_start <= cfg.beta_end < 1 or cfg.T < 1:
            raise ValueError(f"data-oracle schedule needs T >= 1 and 0 < beta_start <= beta_end < 1, got {cfg}")

    @classmethod
    def num_timesteps(cls, cfg: DataOracleConfig) -> int:
        return cfg.T

    @classmethod
    def from_data(cls, cfg: DataOracleConfig, data):
        train = getattr(data, "train_x", None)
        if train is None or train.dtype != torch.uint8:
            raise ValueError(f"the data-oracle needs an image dataset (MNIST, Fashion-MNIST, CIFAR-10, a folder);"
                             f" {getattr(data, 'name', 'this data')} has no training images")
        if cfg.n_images > len(train):
            raise ValueError(f"model.n_images={cfg.n_images}, but {data.name} has {len(train)} training images")
        images = train[:cfg.n_images].float() / 127.5 - 1.0
        return cls(cfg, tuple(data.shape), images=images)

    def _d2(self, x: torch.Tensor) -> torch.Tensor:
        return sq_distances(self.exact_d.images, self.exact_d.sq_norms, x)

    def nearest_distance(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample L2 distance (model space) to the nearest of the oracle's training images."""
        return self._d2(x).min(1).values.sqrt()

    def nearest_image(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample index of the nearest training image."""
        return self._d2(x).argmin(1)

    def param_groups(self) -> dict[str, ParamGroup]:
        return {"model": ParamGroup([], lr=0.0)}

    def forward(self, x0, *, phase: str, step: int, y=None):
        raise RuntimeError("the data-oracle is exact: there is nothing to train")

    def denoisers(self) -> list[nn.Module]:
        return [self.eps, self.exact_d]

    def denoiser(self) -> Denoiser:
        view = denoiser_of(self, own=False)
        return dataclasses.replace(view, fn=self.exact_d, sigma_min=0.0, sigma_max=math.inf,
                                   describe={"view": f"ideal denoiser of {self.cfg.n_images} training images,"
                                             " exact at every sigma > 0"})

    def prediction(self) -> Prediction:
        return Prediction(self.eps, "eps", self.schedule)
