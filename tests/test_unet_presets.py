"""Every image preset builds its UNet (diffusers UNet2DModel) at its resolution: 28, 32, 64 and 256 px."""

from __future__ import annotations

import pytest
import torch

import methods
from bench.config.run import resolve_run_config

PRESETS = {"mnist-cpu": (1, 28), "stackedmnist-cpu": (3, 28), "mnist": (1, 32), "stackedmnist": (3, 32),
           "cifar10": (3, 32), "celeba64": (3, 64), "celebahq256": (3, 256)}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_image_presets_build_their_unet(preset):
    channels, size = PRESETS[preset]
    cls = methods.get_model("ddpm")
    cfg = resolve_run_config("ddpm", model_cls=cls.Config, preset=preset)
    assert cfg.data.resolution in (0, size)
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        net = cls(cfg.model, (channels, size, size)).net.net  # the wrapped UNet2DModel
    assert net.config.sample_size == size and net.config.in_channels == channels
    assert list(net.config.block_out_channels) == list(cfg.model.net.channels)
