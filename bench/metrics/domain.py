"""Domain metrics for MNIST-family data through the bench classifier, and StackedMNIST modes.

- StackedMNIST (Srivastava et al. 2017; the DDGAN paper's Table 3 protocol): each RGB
  channel is classified as a digit; a sample's mode is the triple 100 d_R + 10 d_G + d_B.
  `modes` is the number of distinct triples among the samples (of 1000; the paper uses
  26,000 samples) and `mode_kl` is KL(p || uniform(1000)) of their histogram p (nats).
- fd_classifier: Frechet distance between the samples and the reference set in the
  classifier's penultimate features (128-d per channel; StackedMNIST concatenates the
  three channels' features, 384-d).
- is_classifier: exp(E KL(p(y|x) || p(y))) from the classifier's softmax (10 classes; for
  StackedMNIST the product of the channels' softmaxes over the 1000 triples), 10 splits.
These are not Inception FID/IS: they live in a digit classifier's space and are only
comparable with each other.
"""

from __future__ import annotations

import torch

from bench.metrics.classifier import Classifier

STACKED_MODES = 1000
LOG_P_FLOOR = -300.0  # log-probabilities are floored here: a class that no sample in an IS split supports
# would otherwise underflow to p = 0 and make torch-fidelity's KL term 0 * inf (NaN); e^-300 changes nothing else


def mode_metrics(modes: torch.Tensor, k: int = STACKED_MODES) -> dict[str, float]:
    """Distinct modes among `modes` (ints in 0..k-1) and KL(histogram || uniform(k)) in nats."""
    counts = torch.bincount(modes.long(), minlength=k).double()
    p = counts / counts.sum()
    nz = p > 0
    return {"modes": int(nz.sum()), "mode_kl": float((p[nz] * (p[nz] * k).log()).sum())}


def classify(clf: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probabilities over classes, features) of uint8 images (N, C, H, W).

    One channel: the classifier's log-softmax (N, 10) and features (N, 128). Three channels
    (StackedMNIST): the joint log-probability of the 1000 digit triples (N, 1000), as
    independent per-channel softmaxes, and the concatenated features (N, 384)."""
    per_channel = [clf.predict(x[:, c:c + 1]) for c in range(x.shape[1])]
    feats = torch.cat([f for _, f in per_channel], dim=1)
    logp = [logits.log_softmax(1) for logits, _ in per_channel]
    if len(logp) == 1:
        return logp[0].clamp_min(LOG_P_FLOOR), feats
    r, g, b = logp
    joint = r[:, :, None, None] + g[:, None, :, None] + b[:, None, None, :]  # index 100 d_R + 10 d_G + d_B
    return joint.reshape(len(x), -1).clamp_min(LOG_P_FLOOR), feats


def stacked_modes(log_probs: torch.Tensor) -> dict[str, float]:
    """`modes` and `mode_kl` from the joint log-probabilities of `classify` (argmax triple per sample)."""
    return mode_metrics(log_probs.argmax(1), STACKED_MODES)
