"""Shared fixtures: tiny configurations so every test runs in seconds on a CPU."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# property-based tests: a fixed seed (derandomize) and a size that fits the default run
settings.register_profile("bench", max_examples=30, derandomize=True, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bench"))

import methods
from bench.config.values import build

# Small model configs per trained method and data kind (merged over the method's Config defaults).
TINY_MODEL: dict[str, dict] = {
    "ddpm": {"T": 100, "net": {"hidden": 32, "depth": 1, "emb_dim": 16}},
    "oracle": {"T": 100},
    "vdm": {"net": {"hidden": 32, "depth": 1, "emb_dim": 16}},
    "flow": {"net": {"hidden": 32, "depth": 1, "emb_dim": 16}},
    "edm": {"net": {"hidden": 32, "depth": 1, "emb_dim": 16}},
    "meanflow": {"net": {"hidden": 32, "depth": 1, "emb_dim": 16}},
    "ect": {"curriculum_steps": 30, "net": {"hidden": 32, "depth": 1, "emb_dim": 16}},
    "data-oracle": {"T": 100},
    # consistency training: the contract tests build models without parents (distillation: tests/test_cm.py)
    "cm": {"mode": "train", "net": {"hidden": 32, "depth": 1, "emb_dim": 16}},
    "ddgan": {"T": 2, "out_act": "none", "gen": {"nz": 4, "z_emb_dim": 16, "n_mlp": 1, "hidden": 32, "depth": 1},
              "disc": {"hidden": 32, "depth": 1, "t_emb_dim": 16}},
}
TINY_IMAGE_MODEL: dict[str, dict] = {
    "autoencoder": {"channels": [8, 16], "norm_groups": 8},
    "ddpm": {"T": 20, "net": {"channels": [16, 32], "layers_per_block": 1, "attn_levels": [1]}},
    "oracle": {"T": 20},
    # loss_T > 0: the discrete-time loss, and 10 default sampling steps (as the reference samples a discrete model)
    "vdm": {"loss_T": 10, "net": {"channels": [16, 32], "layers_per_block": 1, "attn_levels": [1]}},
    "flow": {"net": {"channels": [16, 32], "layers_per_block": 1, "attn_levels": [1]}},
    "edm": {"net": {"channels": [16, 32], "layers_per_block": 1, "attn_levels": [1]}},
    "meanflow": {"net": {"channels": [16, 32], "layers_per_block": 1, "attn_levels": []}},
    "ect": {"curriculum_steps": 30, "net": {"channels": [16, 32], "layers_per_block": 1, "attn_levels": [1]}},
    "data-oracle": {"T": 20},
    "cm": {"mode": "train", "net": {"channels": [16, 32], "layers_per_block": 1, "attn_levels": [1]}},
    "ddgan": {"T": 2, "gen": {"nz": 4, "z_emb_dim": 16, "n_mlp": 1, "nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1,
                              "attn_resolutions": [8]}, "disc": {"ngf": 4, "t_emb_dim": 16}},
}
VECTOR_SHAPE = (2,)
IMAGE_SHAPE = (1, 16, 16)

# A preset for fast training in tests: one section per trained method.
TINY_PRESET = """
description = "tests: tiny models, a few steps"
[data]
name = "gaussians25"
num_train = 2000
[train]
steps = 30
batch_size = 64
log_every = 10
ckpt_every = 10
keep_checkpoints = 10
preview_samples = 0
[ddpm.model]
T = 100
[ddpm.model.net]
hidden = 32
depth = 1
emb_dim = 16
[vdm.model]
lr = 1e-3
[vdm.model.net]
hidden = 32
depth = 1
emb_dim = 16
[flow.model]
lr = 1e-3
couplings = 300
coupling_sampler = "flow"
coupling_steps = 4
coupling_batch = 100
[flow.model.net]
hidden = 32
depth = 1
emb_dim = 16
[edm.model]
lr = 1e-3
sigma_data = 2.8
[edm.model.net]
hidden = 32
depth = 1
emb_dim = 16
[ect.model]
lr = 1e-3
sigma_data = 2.8
curriculum_steps = 30
[ect.model.net]
hidden = 32
depth = 1
emb_dim = 16
[meanflow.model]
lr = 1e-3
[meanflow.model.net]
hidden = 32
depth = 1
emb_dim = 16
[cm.model]
lr = 1e-3
sigma_data = 2.8
N = 6
s0 = 2
s1 = 8
curriculum_steps = 30
[cm.model.net]
hidden = 32
depth = 1
emb_dim = 16
[ddgan.model]
T = 2
out_act = "none"
[ddgan.model.gen]
nz = 4
z_emb_dim = 16
n_mlp = 1
hidden = 32
depth = 1
[ddgan.model.disc]
hidden = 32
depth = 1
t_emb_dim = 16
"""


# A preset for fast image training in tests (MNIST at its native 28 px).
TINY_IMAGE_PRESET = """
description = "tests: tiny image models, a few steps"
[data]
name = "mnist"
[train]
steps = 4
batch_size = 8
log_every = 2
ckpt_every = 4
preview_samples = 0
[ddpm.model]
T = 20
[ddpm.model.net]
channels = [16, 32]
layers_per_block = 1
attn_levels = []
"""


def tiny_model_config(name: str, shape: tuple[int, ...] = VECTOR_SHAPE):
    """The tiny configuration of model `name` for data of `shape`."""
    cls = methods.get_model(name)
    table = TINY_MODEL if len(shape) == 1 else TINY_IMAGE_MODEL
    return build(cls.Config, table.get(name, {}), "model.")


def native_sampler(model: methods.Model, steps: int | None = None, sampler: str | None = None, **options):
    """The model's own sampler (or `sampler`) built at `steps` (default: the sampler's default)."""
    cls = methods.get_sampler(sampler or type(model).native_sampler)
    steps = cls.default_steps(type(model), model.cfg) if steps is None else steps
    return cls.build(model, steps, cls.Options(**options))


def shared_data_root() -> Path | None:
    """../shared/data beside the checkout (CI and development), or BENCH_TEST_DATA; None if absent."""
    import os

    for candidate in (os.environ.get("BENCH_TEST_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    return None


def inception_weights() -> Path | None:
    root = shared_data_root()
    path = root / "inception" / "pt_inception-2015-12-05-nologits.pth" if root else None
    return path if path is not None and path.exists() else None


def invoke(args: list[str], cwd: Path):
    """Run the CLI in `cwd` as a user would: no download ever, runs and caches inside `cwd`, nothing
    taken from the developer's environment."""
    from typer.testing import CliRunner

    from bench.cli import app

    old = os.getcwd()
    os.chdir(cwd)
    try:
        env = {"BENCH_RUNS_DIR": str(cwd / "runs"), "BENCH_CACHE_DIR": str(cwd / "cache"), "BENCH_OFFLINE": "1",
               "BENCH_DATA_DIR": "", "BENCH_FID_WEIGHTS": "", "BENCH_VGG16_WEIGHTS": ""}
        return CliRunner().invoke(app, args, env=env)
    finally:
        os.chdir(old)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def one_error_line(result) -> str:
    """Assert a CLI result is one `error: ...` line, exit code 2 and no traceback; return the line."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="session")
def fid_weights() -> Path:
    """../shared/data's FID Inception weights (logits zeroed); the test is skipped without them."""
    path = inception_weights()
    if path is None:
        pytest.skip("../shared/data has no Inception weights")
    return path


@pytest.fixture
def shared_data() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("../shared/data is not present")
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_preset.toml"
    path.write_text(textwrap.dedent(TINY_PRESET))
    return path


@pytest.fixture
def tiny_suite(tmp_path: Path, tiny_preset: Path) -> Path:
    path = tmp_path / "tiny_suite.toml"
    path.write_text(textwrap.dedent(f"""
        description = "tests: tiny grid"
        dataset = "gaussians25"
        preset = "{tiny_preset}"
        methods = ["ddpm", "ddim"]
        num_samples = 200
        sample_batch = 100
        [steps]
        ddpm = [100]
        ddim = [1, 5]
        [timing]
        batch = 20
        warmup = 1
        repeats = 3
        max_seconds = 2
    """))
    return path


@pytest.fixture
def tiny_image_suite(tmp_path: Path) -> Path:
    """A one-cell MNIST grid (DDIM-2 over a 4-step DDPM, 6 samples) with Inception metrics on."""
    preset = tmp_path / "tiny_image_preset.toml"
    preset.write_text(textwrap.dedent(TINY_IMAGE_PRESET))
    path = tmp_path / "tiny_image_suite.toml"
    path.write_text(textwrap.dedent(f"""
        description = "tests: tiny image grid"
        dataset = "mnist"
        preset = "{preset}"
        methods = ["ddim"]
        num_samples = 6
        sample_batch = 6
        notes = ["a test grid"]
        [steps]
        ddim = [2]
        [metrics]
        precision_recall = "inception"
        classifier = false
        kid_subset_size = 6
        [timing]
        batch = 4
        warmup = 1
        repeats = 3
        max_seconds = 1
    """))
    return path


COMMAND_FLAGS = {"--suite": "suite", "--samplers": "samplers", "--model": "models", "--dataset": "dataset",
                 "--steps": "steps", "--nfe": "nfe", "--num-samples": "num_samples", "--seed": "seed",
                 "--seeds": "seeds", "--bootstrap": "bootstrap", "--guidance": "guidance", "--classes": "classes",
                 "--precision": "precision", "--latent": "latent", "--grid": "grids"}


def request_of(recorded: dict):
    """The CompareRequest a committed results folder was written for: the command its spec.json records (a grid
    made with flags), else its suite's own grid."""
    import shlex

    from bench.config.requests import CompareRequest

    words = shlex.split(recorded.get("command", ""))[2:]
    kwargs = {COMMAND_FLAGS[flag]: value for flag, value in zip(words[::2], words[1::2])}
    for key in ("num_samples", "seed", "bootstrap"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    return CompareRequest.from_text(**kwargs) if kwargs else CompareRequest(suite=recorded["suite"])
