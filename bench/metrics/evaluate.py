"""Metrics behind one entry point with fixed result keys (columns in bench/results/schema.py).

`evaluate(data, samples, seed=..., images=...)` scores samples in data space and returns
(metrics, notes): a metric that does not apply is absent, and a note says why. Toy data
is scored by every registered toy metric (bench/metrics/registry.py; the modules in
bench/metrics/catalog.py), so a new one needs no edit here; image data by an `ImageEvaluator`
(bench/metrics/images.py) built once per comparison with `image_evaluator`.
"""

from __future__ import annotations

from typing import Callable

import torch

from bench.metrics import bootstrap as boot
from bench.metrics.catalog import ToyTarget, list_metrics, score_toy
from bench.metrics.conditional import toy_conditional
from bench.metrics.images import ImageEvaluator, floor_images
from bench.config.metric_options import MetricOptions, MetricResources

EVAL_SEED_OFFSET = 10_000  # fresh reference data never shares a seed with training data or samples

__all__ = ["EVAL_SEED_OFFSET", "MetricOptions", "MetricResources", "evaluate", "floor_samples", "image_evaluator",
           "is_image_data", "toy_metrics"]


def is_image_data(data) -> bool:
    return hasattr(data, "test_x")


def image_evaluator(data, *, options: MetricOptions, resources: MetricResources, num_samples: int, data_cfg,
                    device: torch.device, log: Callable[[str], None] = print, shard=None):
    """The evaluator of an image dataset (None for toy data, which needs none); `shard` spreads its feature
    extraction over the processes of a launch (bench/shard.py)."""
    if not is_image_data(data):
        return None

    return ImageEvaluator(data, options=options, resources=resources, num_samples=num_samples, data_cfg=data_cfg,
                          device=device, log=log, shard=shard)


def evaluate(data, samples: torch.Tensor, *, seed: int, images=None, bootstrap: int = 0,
             labels: torch.Tensor | None = None) -> tuple[dict[str, float], list[str]]:
    """`bootstrap` > 0 adds a percentile interval over that many resamples of the samples
    (bench/metrics/bootstrap.py) as the `bootstrap` and `bootstrap_ci` columns. `labels`: the classes the
    samples were asked for (a conditional model), which adds cond_accuracy and classes_covered
    (bench/metrics/conditional.py); every other metric stays unconditional, over all classes."""
    if is_image_data(data):
        if images is None:
            raise ValueError("image data is scored by an ImageEvaluator: pass images=image_evaluator(...)")
        return images.evaluate(samples, bootstrap=bootstrap, labels=labels)
    notes: list[str] = []
    finite = torch.isfinite(samples.flatten(1)).all(1)
    if not bool(finite.all()):  # a diverging sampler or checkpoint: no metric of part of the samples
        return {}, [f"no toy metrics: {int((~finite).sum())} of {len(samples)} samples are NaN or inf"]
    reference = data.sample_data(len(samples), torch.Generator().manual_seed(EVAL_SEED_OFFSET + seed))
    target = ToyTarget(reference=reference, mixture=data.mixture)
    applicable, skipped = toy_metrics(data)

    def toy(x: torch.Tensor) -> dict[str, float]:
        return {col: v for m in applicable for col, v in score_toy(m, x, target).items()}

    metrics = toy(samples)
    if skipped:
        notes.append(f"{'/'.join(m.column for m in skipped)}: {data.name} is not a mixture")
    if labels is not None and data.mixture is not None:
        metrics.update(toy_conditional(samples, labels, data.mixture))
    if bootstrap:
        metrics.update(boot.columns(boot.interval(toy, samples, resamples=bootstrap), bootstrap))
    return metrics, notes


def toy_metrics(data) -> tuple[list, list]:
    """(the registered toy metrics that apply to `data`, those that need a mixture it is not)."""
    applicable, skipped = [], []
    for m in list_metrics("toy"):
        (skipped if "mixture" in m.needs and data.mixture is None else applicable).append(m)
    return applicable, skipped


def floor_samples(data, n: int, *, seed: int, labelled: bool = False):
    """Real data drawn independently of the reference set: the best score a model can expect.
    Images: n test images (the reference set is training images). `labelled`: (samples, their true
    classes), for the floor of a conditional grid (None where the data has no labels)."""
    if is_image_data(data):

        x, y = floor_images(data, n, seed=2 * EVAL_SEED_OFFSET + seed)
    else:
        x, y = data.sample_labelled(n, torch.Generator().manual_seed(2 * EVAL_SEED_OFFSET + seed))
    return (x, y) if labelled else x
