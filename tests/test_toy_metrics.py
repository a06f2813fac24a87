"""Toy-metric conventions: real data scores what it should, collapsed samplers are caught."""

from __future__ import annotations

import math

import torch

from bench.data.toy2d import gaussians8, gaussians25
from bench.metrics.toy import mixture_metrics, sliced_wasserstein


def draw(mixture, n, seed):
    return mixture.sample(n, torch.Generator().manual_seed(seed))


def test_real_data_covers_every_mode_with_high_quality():
    mix = gaussians25()
    m = mixture_metrics(draw(mix, 5000, 0), mix)
    assert m["modes"] == 25
    # P(|N(0, I_2)| < 3) = 1 - exp(-4.5) = 0.9889: the best any sampler can score
    assert abs(m["hq_fraction"] - (1 - math.exp(-4.5))) < 0.01
    assert m["mode_kl"] < 0.01


def test_single_mode_sampler_covers_one_mode():
    mix = gaussians25()
    one = mix.means[7] + mix.std * torch.randn(5000, 2, generator=torch.Generator().manual_seed(0))
    m = mixture_metrics(one, mix)
    assert m["modes"] == 1
    assert m["hq_fraction"] > 0.98
    assert abs(m["mode_kl"] - math.log(25)) < 1e-6


def test_samples_between_modes_are_low_quality():
    mix = gaussians8()
    m = mixture_metrics(torch.zeros(1000, 2), mix)
    assert m["hq_fraction"] == 0 and m["modes"] == 0 and math.isnan(m["mode_kl"])


def test_coverage_threshold_is_a_fifth_of_the_expected_share():
    mix = gaussians25()
    n = 2500  # expected share 100 per mode: a mode needs >= 20 high-quality samples
    x = draw(mix, n, 1)
    k = torch.cdist(x, mix.means).argmin(1)
    keep = torch.cat([torch.nonzero(k == 0).flatten()[:19], torch.nonzero(k != 0).flatten()])
    assert mixture_metrics(x[keep], mix)["modes"] == 24


def test_sliced_wasserstein_conventions():
    mix = gaussians25()
    x, y = draw(mix, 4000, 0), draw(mix, 4000, 1)
    assert sliced_wasserstein(x, x) == 0.0
    assert sliced_wasserstein(x, y) < 0.1
    assert abs(sliced_wasserstein(x + torch.tensor([1.0, 0.0]), x) - sliced_wasserstein(x, x + torch.tensor([1.0, 0.0]))) < 1e-12
    # a pure shift by d moves every projection by |theta . d|; SW1 is its mean, E|theta_1| = 2/pi
    shift = sliced_wasserstein(x + torch.tensor([1.0, 0.0]), x)
    assert abs(shift - 2 / math.pi) < 0.05
