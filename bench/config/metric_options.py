"""What image metrics compute (a suite's [metrics] table) and where their files come from.

`MetricOptions` is part of a comparison's grid (it changes the numbers); `MetricResources`
says where weights and caches live (it changes where numbers come from, not what they
mean: the weights' sha256 is recorded in spec.json). Both are explicit arguments: nothing
below the CLI reads the environment.
"""

from __future__ import annotations

import dataclasses

from bench.errors import BenchError

PRC_SPACES = ("vgg16", "inception", "off")


@dataclasses.dataclass(frozen=True)
class MetricOptions:
    inception: bool = True  # FID, KID, IS and (in Inception space) precision/recall
    inception_samples: int = 0  # samples scored by the Inception metrics; 0: all of them
    reference_samples: int = 0  # training images in the reference sets; 0: as many as scored samples
    precision_recall: str = "vgg16"  # vgg16 (the standard; Inception pool3 when VGG16 is unavailable) | inception | off
    prc_k: int = 3  # nearest neighbours of the precision/recall manifolds
    kid_subset_size: int = 1000  # KID: 100 subsets of this size (capped at the set sizes)
    classifier: bool = True  # MNIST-family domain metrics and StackedMNIST modes


def validate_options(opts: MetricOptions) -> None:
    checks = [
        (opts.inception_samples >= 0, "metrics.inception_samples must be >= 0 (0: every sample)"),
        (opts.reference_samples >= 0, "metrics.reference_samples must be >= 0 (0: as many as scored samples)"),
        (opts.precision_recall in PRC_SPACES, f"metrics.precision_recall must be one of: {', '.join(PRC_SPACES)}"),
        (opts.prc_k >= 1, "metrics.prc_k must be >= 1"),
        (opts.kid_subset_size >= 2, "metrics.kid_subset_size must be >= 2"),
    ]
    for ok, msg in checks:
        if not ok:
            raise BenchError(msg)


@dataclasses.dataclass(frozen=True)
class MetricResources:
    fid_weights: str = ""  # Inception weights file (torch-fidelity layout); "": torch-fidelity's own copy
    vgg16_weights: str = ""  # torchvision VGG16 state dict for precision/recall; "": torchvision's own copy
    cache_dir: str = ""  # reference features and the domain classifier; "": nothing is cached on disk
    download: bool = False  # let torch-fidelity / torchvision download missing weights
    feature_batch: int = 0  # images per feature-extractor call; 0: 50 on a CPU, 250 on a GPU (no effect on results)
