"""The facts of the metrics scored outside toy data: Inception, classifier and exact-score metrics.

Their numbers come from their evaluators (ImageEvaluator in bench/metrics/images.py, over
torch-fidelity; the data oracle's `nn_dist` in bench/measure/cell.py); only their facts register
here, apart from those heavy modules, so that the schema can read them without loading either.
"""

from __future__ import annotations

from bench.metrics.registry import register_metric

INCEPTION_POOL3 = "Inception-v3 pool3 features (torch-fidelity's FID network)"
PRC_SPACE = "VGG16 fc2 features (Inception-v3 pool3 when VGG16 is unavailable or metrics.precision_recall = inception)"
CLASSIFIER = "bench's MNIST-family classifier"

register_metric("fid", header="FID", kind="image", position=1, group="quality", better="lower", fmt="{:.2f}",
                log_scale=True, features=INCEPTION_POOL3, needs=("images", "inception"))
register_metric("kid", header="KID", kind="image", position=2, group="quality", better="lower", fmt="{:.4f}",
                log_scale=True, features=f"{INCEPTION_POOL3}, cubic kernel, 100 subsets", extra=("kid_std",),
                needs=("images", "inception"))
register_metric("is", header="IS", kind="image", position=3, group="quality", better="higher", fmt="{:.2f}",
                features="Inception-v3 logits, 10 splits", extra=("is_std",), needs=("images", "inception"))
register_metric("precision", header="precision", kind="image", position=4, group="quality", better="higher",
                fmt="{:.3f}", features=f"{PRC_SPACE}, k nearest neighbours", needs=("images", "prc_network"))
register_metric("recall", header="recall", kind="image", position=5, group="coverage", better="higher",
                fmt="{:.3f}", features=f"{PRC_SPACE}, k nearest neighbours", needs=("images", "prc_network"))
register_metric("fd_classifier", header="FD (classifier features)", kind="classifier", position=1, group="quality",
                better="lower", fmt="{:.2f}", log_scale=True, features=f"{CLASSIFIER}'s penultimate features",
                needs=("images", "classifier"))
register_metric("is_classifier", header="IS (classifier labels)", kind="classifier", position=2, group="quality",
                better="higher", fmt="{:.2f}", features=f"{CLASSIFIER}'s softmax, 10 splits",
                needs=("images", "classifier"))
register_metric("nn_dist", header="L2 to nearest training image", kind="exact", position=1, group="quality",
                better="lower", fmt="{:.3f}",
                features="model space [-1, 1]: each 8-bit sample to the nearest of the oracle's training images",
                needs=("images", "oracle"))
