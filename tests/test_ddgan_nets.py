"""DDGAN networks: FIR resampling, AdaGN, the z-conditioned UNet and the discriminators (random tensors)."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.downsampling import downsample_2d
from diffusers.models.upsampling import upsample_2d

from methods.nets.ddgan_disc import TimeDiscriminator, minibatch_stddev
from methods.nets.ddgan_nets import build_discriminator, build_generator
from methods.nets.ddgan_layers import DiscConfig, GenConfig, ada_group_norm
from methods.nets.fir import fir_downsample, fir_upsample

TINY_GEN = GenConfig(nz=4, z_emb_dim=16, n_mlp=1, nf=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,))


@pytest.mark.parametrize("size", [4, 7, 14, 32])
def test_fir_resampling_equals_upfirdn2d(size):
    x = torch.randn(3, 5, size, size)
    assert torch.allclose(fir_upsample(x), upsample_2d(x, (1, 3, 3, 1), factor=2), atol=1e-5)
    if size % 2 == 0:
        assert torch.allclose(fir_downsample(x), downsample_2d(x, (1, 3, 3, 1), factor=2), atol=1e-5)


def test_adaptive_group_norm_starts_as_a_plain_group_norm_and_follows_z():
    norm = ada_group_norm(16, 8, 2)
    h, zemb = torch.randn(4, 8, 5, 5), torch.randn(4, 16)
    torch.nn.init.zeros_(norm.linear.weight)
    assert torch.allclose(norm(h, zemb), torch.nn.functional.group_norm(h, 2, eps=1e-6), atol=1e-5)
    torch.nn.init.normal_(norm.linear.weight)
    assert not torch.allclose(norm(h, zemb), norm(h, torch.randn(4, 16)))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_unet_generator_maps_x_t_z_to_an_image(shape):
    g = build_generator(TINY_GEN, shape, use_z=True)
    x, t, z = torch.randn(4, *shape), torch.tensor([0, 1, 2, 3]), torch.randn(4, 4)
    out = g(x, t, z)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.nn.init.normal_(g.latent.mapping[1].weight)
    torch.nn.init.normal_(g.conv_out.weight)  # the output conv starts at ~0, as the reference's
    assert not torch.allclose(g(x, t, z), g(x, t, torch.randn(4, 4)), atol=1e-4), "z must reach the output"
    with pytest.raises(ValueError, match="takes a latent z"):
        g(x, t, None)


def test_unet_without_z_has_no_mapping_network_and_rejects_bad_sizes():
    g = build_generator(TINY_GEN, (1, 16, 16), use_z=False)
    assert g.nz == 0 and g.latent.mapping is None
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([0, 1])
    assert torch.equal(g(x, t, None), g(x, t, None))
    with pytest.raises(ValueError, match="not divisible"):
        build_generator(TINY_GEN, (1, 30, 30), use_z=True)


@pytest.mark.parametrize("layout,shape,final", [("small", (3, 32, 32), 4), ("small", (1, 28, 28), 7),
                                                ("large", (3, 64, 64), 4), ("large", (3, 256, 256), 4)])
def test_time_conditioned_discriminators(layout, shape, final):
    d = TimeDiscriminator(shape, ngf=4, t_emb_dim=16, layout=layout)
    h = torch.randn(6, *shape)
    sizes = []
    hook = d.blocks[-1].register_forward_hook(lambda m, a, out: sizes.append(out.shape[-1]))
    logit = d(h, torch.arange(6) % 4, torch.randn(6, *shape))
    hook.remove()
    assert logit.shape == (6,) and sizes == [final]


def test_minibatch_stddev_groups_divide_any_batch():
    for b in (1, 3, 4, 6, 8):
        out = minibatch_stddev(torch.randn(b, 5, 2, 2))
        assert out.shape == (b, 6, 2, 2) and torch.isfinite(out).all()


def test_builders_pick_networks_by_shape_and_reject_mismatches():
    assert type(build_discriminator(DiscConfig(ngf=4, t_emb_dim=16), (3, 256, 256))).__name__ == "TimeDiscriminator"
    assert build_discriminator(DiscConfig(ngf=4, t_emb_dim=16), (3, 256, 256)).blocks[0].downsample  # large layout
    assert type(build_generator(GenConfig(hidden=16, depth=1, nz=2, z_emb_dim=8, n_mlp=1), (2,), use_z=True)).__name__ \
        == "MLPGenerator"
    with pytest.raises(ValueError, match="needs vector data"):
        build_generator(GenConfig(kind="mlp"), (1, 8, 8), use_z=True)
    with pytest.raises(ValueError, match="unknown disc.kind"):
        build_discriminator(DiscConfig(kind="huge"), (2,))
