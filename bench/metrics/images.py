"""Image metrics for one dataset, set up once per comparison and applied to every row.

- Inception (torch-fidelity's FID network, pool3): FID and KID against the reference set,
  IS when the weights carry real logits, and precision/recall (k = 3) in VGG16 fc2 features
  when VGG16 is available, else in Inception pool3 features (named in spec.json and the
  report). Features of a sample set are extracted once; every Inception metric comes from them.
- Domain (MNIST family, bench's own classifier): fd_classifier, is_classifier and, for
  StackedMNIST, modes and mode_kl (bench/metrics/domain.py).

The reference set is `reference_samples` training images (default: as many as the scored
samples), chosen by a fixed permutation (seed 0) so that every comparison on a dataset
uses the same images; its features are cached on disk under a key made of the dataset,
the images' fingerprint, the extractor and the weights' sha256. Samples are uint8 images in
data space (quantised from model space by rounding, never JPEG).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.config.run import DataConfig
from bench.data.images import STACKED_TEST_SIZE
from bench.data.load import load_dataset
from bench.config.datasets import DatasetInfo, get_dataset_info
from bench.errors import BenchError
from bench.files import check_writable
from bench.shard import SINGLE
from bench.metrics import bootstrap as boot
from bench.metrics import domain, fidelity
from bench.metrics.classifier import Classifier, fingerprint, load_or_train
from bench.metrics.conditional import conditional_metrics
from bench.metrics.features import (
    INCEPTION,
    LOGITS,
    POOL3,
    VGG16,
    VGG16_LAYER,
    Extractor,
    Unavailable,
    load_extractor,
)
from bench.config.metric_options import MetricOptions, MetricResources, validate_options
from bench.files import safe_name

REFERENCE_SEED = 0
PAPER_MODE_SAMPLES = STACKED_TEST_SIZE  # the paper counts modes over 26,000 samples


def reference_indices(n_total: int, n: int) -> torch.Tensor:
    """The first n of a fixed permutation of the training set (the same for every comparison)."""
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(REFERENCE_SEED))[:n]



MIN_SAMPLES = 2


class ImageEvaluator:
    """Loads the extractors and the classifier once; `evaluate(x)` scores one set of samples."""

    def __init__(self, data, *, options: MetricOptions, resources: MetricResources, num_samples: int,
                 data_cfg: DataConfig, device: torch.device, log: Callable[[str], None] = print, shard=None):
        """`shard` (bench/shard.py): under several processes each extracts the features of its slice of
        the images, and the slices are gathered; only the main process writes the caches."""

        validate_options(options)
        self.data, self.options, self.resources, self.device, self.log = data, options, resources, device, log
        self.shard = shard or SINGLE
        try:
            self.info = get_dataset_info(data.name)
        except BenchError:  # an image set without a registration (tests, a caller's own data): no domain facts
            self.info = DatasetInfo(data.name, "image", "", "", "")
        self.cache_dir = Path(resources.cache_dir).expanduser() if resources.cache_dir else None
        if self.cache_dir is not None:
            check_writable(self.cache_dir)  # before a minute of feature extraction, not after it
        if num_samples < MIN_SAMPLES:
            raise BenchError(f"image metrics need at least {MIN_SAMPLES} samples (FID and FD fit a covariance), got"
                             f" {num_samples}: give more samples")
        self.k = min(options.inception_samples or num_samples, num_samples)
        self.n_ref = min(options.reference_samples or self.k, len(data.train_x))
        self.n_ref_domain = min(options.reference_samples or num_samples, len(data.train_x))
        self.notes: list[str] = []  # apply to every row
        self.unavailable: dict[str, str] = {}  # metric -> why it is empty
        self.inception = self._load_inception()
        self.prc = self._load_prc()
        if self.prc is not None and self.k <= options.prc_k:
            raise BenchError(f"precision/recall with k = {options.prc_k} need more than {options.prc_k} samples, got"
                             f" {self.k}: give more samples, or set metrics.precision_recall = \"off\"")
        with self.shard.main_first():  # the main process trains and caches a missing classifier; the others load it
            self.classifier = self._load_classifier(data_cfg)
        if self.n_ref < (options.reference_samples or self.k):
            self.notes.append(f"The training split holds only {self.n_ref} images for the reference set")
        self._refs: dict[tuple[str, str, int], torch.Tensor] = {}
        self._domain_stats: dict[str, np.ndarray] | None = None

    # --- setup --------------------------------------------------------------------------------------
    def _load_inception(self) -> Extractor | None:
        if not self.options.inception:
            self.unavailable["inception"] = "Inception metrics are off in this suite (metrics.inception = false)"
            return None
        try:
            ext = load_extractor(INCEPTION, (POOL3, LOGITS), self.resources, self.device)
        except Unavailable as e:
            self.unavailable["inception"] = f"Inception metrics unavailable: {e}"
            self.log(f"warning: {self.unavailable['inception']}")
            return None
        if not ext.has_logits:
            self.unavailable["is"] = (f"IS unavailable: the logits layer of {Path(ext.weights).name} is all zeros"
                                      " (an IS from it would read 1.0)")
        return ext

    def _load_prc(self) -> Extractor | None:
        space = self.options.precision_recall
        if space == "off":
            self.unavailable["precision_recall"] = "Precision/recall are off (metrics.precision_recall = off)"
            return None
        if space == VGG16:
            try:
                return load_extractor(VGG16, (VGG16_LAYER,), self.resources, self.device)
            except Unavailable as e:
                if self.inception is not None:
                    self.notes.append(f"Precision/recall in Inception pool3 features, not VGG16 ({e})")
                why = f"VGG16 unavailable ({e})"
        else:
            why = "metrics.precision_recall = inception"
        if self.inception is None:
            self.unavailable["precision_recall"] = f"Precision/recall unavailable: {why} and no Inception network"
        return self.inception

    def _load_classifier(self, data_cfg: DataConfig) -> Classifier | None:
        source = self.info.classifier or None
        if not self.options.classifier:
            self.unavailable["classifier"] = "Domain metrics are off in this suite (metrics.classifier = false)"
            return None
        if source is None:
            self.unavailable["classifier"] = f"No domain classifier for {self.data.name} (MNIST-family data only)"
            return None

        src = load_dataset(DataConfig(name=source, root=data_cfg.root, download=data_cfg.download))
        clf = load_or_train(source, src, cache_dir=self.cache_dir, device=self.device, log=self.log)
        if source == "mnist" and clf.info["test_accuracy"] < 0.99:
            self.notes.append(f"The MNIST classifier's test accuracy is {clf.info['test_accuracy']:.4f} (< 0.99)")
        return clf

    # --- reference sets -----------------------------------------------------------------------------
    def _reference(self, ext: Extractor, layer: str, n: int) -> torch.Tensor:
        """Features of the reference set in one layer, from memory, the disk cache, or the extractor."""
        if (ext.name, layer, n) not in self._refs:
            x = self.data.train_x[reference_indices(len(self.data.train_x), n)]
            key = (f"{safe_name(self.data.name)}-train-{'x'.join(map(str, x.shape[1:]))}-n{n}-{fingerprint(x)}"
                   f"-{ext.name}-{layer}-{ext.weights_sha256[:12]}")
            path = self.cache_dir / "reference" / f"{key}.npy" if self.cache_dir else None
            if path is not None and path.exists():
                feats = torch.from_numpy(np.load(path))
            else:
                self.log(f"{ext.label} features of {n} training images (the reference set; computed once"
                         f"{'' if path is None else ', then cached'})")
                feats = self.shard.map_rows(ext, x)[layer]
                if path is not None and self.shard.main:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npy")
                    np.save(tmp, feats.numpy())
                    os.replace(tmp, path)
            self._refs[(ext.name, layer, n)] = feats
        return self._refs[(ext.name, layer, n)]

    def _domain_reference(self) -> dict[str, np.ndarray]:
        if self._domain_stats is None:
            x = self.data.train_x[reference_indices(len(self.data.train_x), self.n_ref_domain)]
            self._domain_stats = fidelity.statistics(self._classify(x)[1])
        return self._domain_stats

    # --- scoring ------------------------------------------------------------------------------------
    def check(self, x: torch.Tensor) -> None:
        if x.dtype != torch.uint8 or tuple(x.shape[1:]) != tuple(self.data.shape):
            raise BenchError(f"{self.data.name} samples must be uint8 (N, {', '.join(map(str, self.data.shape))}),"
                             f" got {str(x.dtype).replace('torch.', '')} {tuple(x.shape)}")

    def evaluate(self, x: torch.Tensor, bootstrap: int = 0,
                 labels: torch.Tensor | None = None) -> tuple[dict[str, float], list[str]]:
        """Every applicable metric of uint8 samples (N, C, H, W); notes say why others are empty.
        `bootstrap` > 0: percentile intervals of FID and FD (classifier) over resampled features.
        `labels`: the classes asked of a conditional model, scored by the domain classifier."""
        self.check(x)
        metrics: dict[str, float] = {}
        pool3, domain_feats = None, None
        if self.inception is not None:
            self.log(f"  {self.inception.label} features of {len(x[:self.k])} samples")
            feats = self.shard.map_rows(self.inception, x[:self.k])
            pool3 = feats[POOL3]
            metrics.update(self._inception_metrics(feats))
        if self.prc is not None:
            metrics.update(self._precision_recall(x[:self.k], pool3))
        if self.classifier is not None:
            domain_metrics, domain_feats = self._domain_metrics(x, labels)
            metrics.update(domain_metrics)
        if bootstrap:
            metrics.update(boot.columns(self._bootstrap(pool3, domain_feats, bootstrap), bootstrap))
        notes = list(self.notes) + [why for key, why in self.unavailable.items()
                                    if key != "is" or self.inception is not None]
        if labels is not None and self.classifier is None:
            notes.append("cond_accuracy / classes_covered: no domain classifier to read the samples' classes")
        if self.info.digit_triples and self.classifier is not None and len(x) != PAPER_MODE_SAMPLES:
            notes.append(f"Modes counted over {len(x)} samples (the paper's protocol uses {PAPER_MODE_SAMPLES})")
        return metrics, notes

    def _inception_metrics(self, feats: dict[str, torch.Tensor]) -> dict[str, float]:
        """FID and KID from pool3 features, IS from the logits when the weights have them."""
        gen, ref = feats[POOL3], self._reference(self.inception, POOL3, self.n_ref)
        out = {"fid": fidelity.frechet_distance(fidelity.statistics(gen), fidelity.statistics(ref)),
               "inception_samples": len(gen), "reference_samples": len(ref)}
        out["kid"], out["kid_std"] = fidelity.kid(gen, ref, subset_size=self.options.kid_subset_size)
        if self.inception.has_logits and len(gen) >= fidelity.IS_SPLITS:
            out["is"], out["is_std"] = fidelity.inception_score(feats[LOGITS])
        return out

    def _precision_recall(self, x: torch.Tensor, pool3: torch.Tensor | None) -> dict[str, float]:
        """k-NN precision/recall in the chosen space (Inception pool3 features are reused, never re-extracted)."""
        if self.prc is self.inception:
            gen, ref = pool3, self._reference(self.inception, POOL3, self.n_ref)
        else:
            self.log(f"  {self.prc.label} features of {len(x)} samples")
            gen, ref = self.shard.map_rows(self.prc, x)[VGG16_LAYER], self._reference(self.prc, VGG16_LAYER, self.n_ref)
        precision, recall = fidelity.precision_recall(gen.to(self.device), ref.to(self.device), k=self.options.prc_k)
        return {"precision": precision, "recall": recall}

    def _bootstrap(self, pool3: torch.Tensor | None, domain_feats: torch.Tensor | None,
                   resamples: int) -> dict[str, list[float]]:
        ci: dict[str, list[float]] = {}
        if pool3 is not None:
            ref = fidelity.statistics(self._reference(self.inception, POOL3, self.n_ref))
            ci.update(boot.interval(lambda f: {"fid": fidelity.frechet_distance(fidelity.statistics(f), ref)}, pool3,
                                    resamples=resamples))
        if domain_feats is not None:
            ref = self._domain_reference()
            ci.update(boot.interval(lambda f: {"fd_classifier": fidelity.frechet_distance(fidelity.statistics(f), ref)},
                                    domain_feats, resamples=resamples))
        return ci

    def _domain_metrics(self, x: torch.Tensor, labels: torch.Tensor | None = None
                        ) -> tuple[dict[str, float], torch.Tensor]:
        log_probs, feats = self._classify(x)
        cond = {} if labels is None else conditional_metrics(log_probs.argmax(1), labels)
        out = {"fd_classifier": fidelity.frechet_distance(fidelity.statistics(feats), self._domain_reference())}
        if len(x) >= fidelity.IS_SPLITS:
            out["is_classifier"] = fidelity.inception_score(log_probs)[0]
        if self.info.digit_triples:
            out.update(domain.stacked_modes(log_probs))
        return {**out, **cond}, feats

    def _classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probabilities, penultimate features) of the domain classifier, sharded like every extractor."""
        out = self.shard.map_rows(lambda v: dict(zip(("log_probs", "feats"), domain.classify(self.classifier, v))), x)
        return out["log_probs"], out["feats"]

    # --- provenance ---------------------------------------------------------------------------------
    def describe(self) -> dict:
        """What spec.json records: options, networks and weights (sha256), reference sets, labels."""
        prc_space = None if self.prc is None else self.prc.label
        k = self.options.prc_k
        labels = {
            "fid": "FID (Inception pool3)", "kid": "KID (Inception pool3)", "is": "IS (Inception logits)",
            "precision": f"precision ({prc_space}, k={k})", "recall": f"recall ({prc_space}, k={k})",
        }
        if self.info.classifier:
            clf = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}.get(self.info.classifier, self.info.classifier)
            labels.update(fd_classifier=f"FD ({clf}-classifier features)", is_classifier=f"IS ({clf}-classifier labels)")
        if self.info.digit_triples:
            labels.update(modes=f"modes (of {domain.STACKED_MODES})", mode_kl="mode KL to uniform")
        return {
            "options": {**self.options.__dict__},
            "inception": None if self.inception is None else {**self.inception.describe(),
                                                              "logits": self.inception.has_logits},
            "precision_recall_features": prc_space,
            "vgg16": None if self.prc is None or self.prc is self.inception else self.prc.describe(),
            "reference": {"split": "train", "inception_images": self.n_ref, "classifier_images": self.n_ref_domain,
                          "selection": f"the first n of a fixed permutation (seed {REFERENCE_SEED}) of the training split"},
            "inception_samples": self.k,
            "classifier": None if self.classifier is None else self.classifier.info,
            "labels": labels,
            "unavailable": dict(self.unavailable),
            "notes": list(self.notes),
        }


def floor_images(data, n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n real test images (all of them if the split is smaller), by a seeded permutation, and their labels
    (None for unlabelled data)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.test_x), generator=gen)[:n]
    return data.test_x[idx], None if data.test_y is None else data.test_y[idx]
