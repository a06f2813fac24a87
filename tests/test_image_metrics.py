"""Image-metric conventions: Frechet distance, KID, precision/recall, IS, StackedMNIST modes.

Feature-space metrics are checked on synthetic features (fast, exact conventions); the
Inception network only on a handful of real images (it runs at a few images per second
on a CPU), and only when ../shared/data holds its weights.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from bench.metrics import domain, fidelity


def gaussian(n, mean, scale, seed, dim=16):
    g = torch.Generator().manual_seed(seed)
    return mean + scale * torch.randn(n, dim, generator=g, dtype=torch.float64)


# --- Frechet distance ---------------------------------------------------------------------------------

def test_frechet_distance_of_a_set_with_itself_is_zero():
    f = gaussian(500, 0.0, 1.0, 0, dim=64)
    s = fidelity.statistics(f)
    assert abs(fidelity.frechet_distance(s, s)) < 1e-6


def test_frechet_distance_matches_the_closed_form_for_two_gaussians():
    d = 6
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T + np.eye(d), b @ b.T + 0.5 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    exact = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
    got = fidelity.frechet_distance({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2})
    assert got == pytest.approx(exact, rel=1e-8)
    # diagonal case: |mu1 - mu2|^2 + sum (sd1 - sd2)^2
    diag = fidelity.frechet_distance({"mu": np.zeros(d), "sigma": np.diag([4.0] * d)},
                                     {"mu": np.ones(d), "sigma": np.diag([1.0] * d)})
    assert diag == pytest.approx(d * 1.0 + d * (2.0 - 1.0) ** 2)


def test_frechet_distance_from_samples_approaches_the_closed_form():
    x, y = gaussian(20000, 0.0, 1.0, 1, dim=4), gaussian(20000, 1.0, 2.0, 2, dim=4)
    fd = fidelity.frechet_distance(fidelity.statistics(x), fidelity.statistics(y))
    assert fd == pytest.approx(4 * 1.0 + 4 * (2.0 - 1.0) ** 2, rel=0.05)


# --- KID, precision/recall, IS ------------------------------------------------------------------------

def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    x, y = gaussian(400, 0.0, 1.0, 3), gaussian(400, 0.0, 1.0, 4)
    same, _ = fidelity.kid(x, y, subset_size=200)
    shifted, _ = fidelity.kid(x, y + 1.0, subset_size=200)
    assert abs(same) < 0.05 and shifted > 10 * max(abs(same), 1e-3)


def test_precision_recall_conventions():
    real = gaussian(300, 0.0, 1.0, 5)
    assert fidelity.precision_recall(real, real, k=3) == (1.0, 1.0)
    far = gaussian(300, 100.0, 1.0, 6)
    assert fidelity.precision_recall(far, real, k=3) == (0.0, 0.0)
    # a collapsed generator: every sample near one real point -> precise but no recall
    collapsed = real[:1] + 1e-3 * gaussian(300, 0.0, 1.0, 7)
    precision, recall = fidelity.precision_recall(collapsed, real, k=3)
    assert precision == 1.0 and recall < 0.05
    with pytest.raises(ValueError, match="more than 3 samples"):
        fidelity.precision_recall(real[:3], real[:3], k=3)


def test_inception_score_conventions():
    n = 1000
    assert fidelity.inception_score(torch.zeros(n, 10))[0] == pytest.approx(1.0)  # uninformative labels
    confident = torch.full((n, 10), -30.0)
    confident[torch.arange(n), torch.arange(n) % 10] = 0.0
    # sure and balanced: exp(H(p(y))) per split, 10 when a split holds every class equally often
    assert 9.0 < fidelity.inception_score(confident)[0] <= 10.0 + 1e-9
    one_class = torch.full((n, 10), -30.0)
    one_class[:, 3] = 0.0
    assert fidelity.inception_score(one_class)[0] == pytest.approx(1.0)  # sure but collapsed


# --- StackedMNIST modes -------------------------------------------------------------------------------

def test_mode_metrics():
    all_modes = domain.mode_metrics(torch.arange(1000).repeat(3))
    assert all_modes["modes"] == 1000 and all_modes["mode_kl"] == pytest.approx(0.0, abs=1e-12)
    one = domain.mode_metrics(torch.full((500,), 42))
    assert one["modes"] == 1 and one["mode_kl"] == pytest.approx(math.log(1000))
    half = domain.mode_metrics(torch.arange(500))
    assert half["modes"] == 500 and half["mode_kl"] == pytest.approx(math.log(2))


class OracleClassifier:
    """Stands in for the trained classifier: looks real MNIST digits up by their bytes."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.table = {img.numpy().tobytes(): int(y) for img, y in zip(images[:, 0], labels)}

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.tensor([self.table[img.numpy().tobytes()] for img in x[:, 0]])
        logits = torch.full((len(x), 10), -30.0, dtype=torch.float64)
        logits[torch.arange(len(x)), y] = 0.0
        return logits, x.flatten(1)[:, ::49].double()


def test_channels_map_to_the_label_convention_of_the_dataset():
    digits = torch.arange(10, dtype=torch.uint8).reshape(10, 1, 1, 1).expand(10, 1, 4, 4).contiguous()
    clf = OracleClassifier(digits, torch.arange(10))
    x = torch.cat([digits[[3]], digits[[1]], digits[[7]]], dim=1)  # R=3, G=1, B=7
    log_probs, feats = domain.classify(clf, x)
    assert log_probs.shape == (1, 1000) and int(log_probs.argmax()) == 317
    assert feats.shape[1] == 3 * OracleClassifier(digits, torch.arange(10)).predict(digits[:1])[1].shape[1]


def test_real_stackedmnist_covers_all_modes_with_low_kl(shared_data):
    from bench.config.run import DataConfig
    from bench.data.load import load_dataset

    mnist = load_dataset(DataConfig(name="mnist", root=str(shared_data)))
    stacked = load_dataset(DataConfig(name="stackedmnist", root=str(shared_data), num_train=1000))
    assert len(stacked.test_x) == 26_000, "the floor row counts modes over the paper's 26,000 samples"
    log_probs, _ = domain.classify(OracleClassifier(mnist.test_x, mnist.test_y), stacked.test_x)
    m = domain.stacked_modes(log_probs)
    assert torch.equal(log_probs.argmax(1), stacked.test_y), "mode index = 100 d_R + 10 d_G + d_B"
    assert m["modes"] == 1000 and m["mode_kl"] < 0.05


def test_the_evaluator_gives_stackedmnist_its_domain_metrics_and_modes(shared_data, monkeypatch):
    from bench.config.run import DataConfig
    from bench.data.load import load_dataset
    from bench.metrics import images as image_metrics
    from bench.metrics.evaluate import MetricOptions, MetricResources, image_evaluator

    mnist = load_dataset(DataConfig(name="mnist", root=str(shared_data)))
    oracle = OracleClassifier(torch.cat([mnist.train_x, mnist.test_x]), torch.cat([mnist.train_y, mnist.test_y]))
    oracle.info = {"dataset": "mnist", "version": 0, "test_accuracy": 1.0}
    monkeypatch.setattr(image_metrics, "load_or_train", lambda *a, **k: oracle)
    cfg = DataConfig(name="stackedmnist", root=str(shared_data), num_train=3000)
    data = load_dataset(cfg)
    ev = image_evaluator(data, options=MetricOptions(inception=False, precision_recall="off"),
                         resources=MetricResources(), num_samples=2000, data_cfg=cfg, device=torch.device("cpu"))
    metrics, notes = ev.evaluate(data.test_x[:2000])
    assert set(metrics) == {"fd_classifier", "is_classifier", "modes", "mode_kl"}
    assert metrics["modes"] == len(set(data.test_y[:2000].tolist()))  # the oracle reads every digit right
    assert "Modes counted over 2000 samples (the paper's protocol uses 26000)" in notes
    assert "Inception metrics are off in this suite (metrics.inception = false)" in notes
    collapsed, _ = ev.evaluate(data.test_x[:1].expand(2000, -1, -1, -1).contiguous())
    assert collapsed["modes"] == 1 and collapsed["mode_kl"] == pytest.approx(math.log(1000))
    assert collapsed["fd_classifier"] > 10 * metrics["fd_classifier"]
    assert ev.describe()["labels"]["modes"] == "modes (of 1000)"
    boot, _ = ev.evaluate(data.test_x[:2000], bootstrap=20)  # features resampled, not re-extracted
    lo, hi = json.loads(boot["bootstrap_ci"])["fd_classifier"]
    assert boot["bootstrap"] == 20 and boot["fd_classifier"] == metrics["fd_classifier"]
    assert 0 < lo < hi < collapsed["fd_classifier"]


def test_precision_recall_use_vgg16_features_when_vgg16_is_available(monkeypatch):
    """Routing only: a stand-in network plays VGG16 (the real weights are not available offline)."""
    from bench.data.images import ImageData
    from bench.metrics import features as F
    from bench.metrics import images as image_metrics
    from bench.metrics.evaluate import MetricOptions, MetricResources, image_evaluator

    class Pixels(torch.nn.Module):
        def forward(self, x):
            return (x.float().flatten(1)[:, ::97],)

    def fake(name, layers, resources, device):
        if name != F.VGG16:
            raise F.Unavailable("not in this test")
        return F.Extractor(name, tuple(layers), "vgg16-fake.pth", "0" * 64, Pixels(), device, 8)

    monkeypatch.setattr(image_metrics, "load_extractor", fake)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 8, 8), generator=g, dtype=torch.uint8)
    data = ImageData("cifar10", x, None, x.clone(), None)
    ev = image_evaluator(data, options=MetricOptions(inception=False, classifier=False), resources=MetricResources(),
                         num_samples=64, data_cfg=None, device=torch.device("cpu"), log=lambda s: None)
    metrics, notes = ev.evaluate(x)
    assert metrics == {"precision": 1.0, "recall": 1.0}  # the reference set is the same 64 images
    assert ev.describe()["labels"]["precision"] == "precision (VGG16 fc2, k=3)"
    assert ev.describe()["vgg16"]["weights"] == "vgg16-fake.pth"
    assert any(n.startswith("Inception metrics are off") for n in notes)
