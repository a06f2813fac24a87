"""Findings of a code review, each pinned by a test that failed before its fix."""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import version
from pathlib import Path

import numpy as np

import bench
from bench.plots import image_grid
from tests.conftest import invoke

PYPROJECT = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()


def _requirement(name: str) -> str | None:
    m = re.search(rf'"{re.escape(name)}([<>=!~][^";]*)?[";]', PYPROJECT)
    return m.group(1) if m else None


def test_torch_fidelity_is_pinned_where_precision_and_recall_take_fake_then_real():
    """Before torch-fidelity 0.4, prc_features_to_metric took (real, fake): precision and recall swap."""
    assert _requirement("torch-fidelity") == ">=0.4"
    major, minor = (int(v) for v in version("torch-fidelity").split(".")[:2])
    assert (major, minor) >= (0, 4)


def test_no_dependency_that_nothing_imports():
    assert _requirement("tabulate") is None and '"tabulate' not in PYPROJECT


def test_image_grid_places_each_image_with_one_pixel_white_gaps():
    imgs = np.arange(5 * 1 * 4 * 4, dtype=np.uint8).reshape(5, 1, 4, 4)
    grid = image_grid(imgs, ncol=3)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 1)
    for i, img in enumerate(imgs):
        r, k = divmod(i, 3)
        np.testing.assert_array_equal(grid[1 + 5 * r:5 + 5 * r, 1 + 5 * k:5 + 5 * k, 0], img[0])
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all() and (grid[6:10, 11:15] == 255).all()
    rgb = image_grid(np.zeros((2, 3, 4, 4), dtype=np.uint8), ncol=2)
    assert rgb.shape == (6, 11, 3)


def test_compare_warns_when_the_rows_come_from_a_dirty_tree(tmp_path, monkeypatch):
    import bench.measure.compare

    monkeypatch.setattr(bench.measure.compare, "git_sha", lambda: "0123456789ab+dirty")
    result = invoke(["compare", "--methods", "ddim", "--model", "oracle", "--steps", "2", "--num-samples", "100",
                     "--out", str(tmp_path / "out"), "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    assert "warning: the working tree has uncommitted changes (code 0123456789ab+dirty)" in result.output


def test_bits_per_dim_of_padded_digits_is_labelled_not_comparable():
    import torch

    from bench.data.images import ImageData
    from bench.metrics.likelihood import bits_per_dim

    class Flat:
        def bpd(self, x, *, generator):
            return torch.full((len(x),), 1.5)

    imgs = torch.zeros(10, 1, 32, 32, dtype=torch.uint8)
    padded = ImageData("mnist", imgs, None, imgs, None, padded_from=28)
    values, notes = bits_per_dim(Flat(), padded, name="flat", num_images=10, seed=0, device=torch.device("cpu"))
    assert values == {"bpd": 1.5}
    assert any("padded from 28x28" in n and "not comparable" in n for n in notes)
    native = ImageData("mnist", imgs[:, :, :28, :28], None, imgs[:, :, :28, :28], None)
    assert not any("padded" in n for n in bits_per_dim(Flat(), native, name="flat", num_images=10, seed=0,
                                                      device=torch.device("cpu"))[1])


def test_clearing_committed_results_to_regenerate_them_is_not_a_dirty_tree(tmp_path):
    """git_sha marks source changes '+dirty', but not results/ or reports/, which a regeneration deletes first."""
    import shutil
    import subprocess

    repo = tmp_path / "repo"
    (repo / "bench" / "results").mkdir(parents=True)
    shutil.copy(Path(bench.__file__).parent / "results" / "provenance.py", repo / "bench" / "results" / "provenance.py")
    for folder in ("results/toy", "reports/toy"):
        (repo / folder).mkdir(parents=True)
        (repo / folder / "a.md").write_text("old\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "x"], cwd=repo, check=True)
    spec = importlib.util.spec_from_file_location("prov_copy", repo / "bench" / "results" / "provenance.py")
    prov = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prov)
    clean = prov.git_sha()
    assert clean != "unknown" and not clean.endswith("+dirty")
    shutil.rmtree(repo / "results" / "toy")
    (repo / "reports" / "toy" / "a.md").write_text("new\n")
    assert prov.git_sha() == clean
    source = repo / "bench" / "results" / "provenance.py"
    source.write_text(source.read_text() + "\n# edit\n")
    assert prov.git_sha() == clean + "+dirty"
