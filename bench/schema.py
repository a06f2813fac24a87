"""The columns of results.csv, defined once. One row per (sampler, model, steps) cell, long format.

Identity       method (the sampler's registry name), label, variant, model (the model's registry
               name: a trained checkpoint, or the exact-score oracle with no checkpoint_step), steps,
               nfe_target (the NFE budget the steps were chosen for; empty when steps were asked for),
               seed, num_samples
Speed          nfe_declared (what the sampler says), nfe_measured (network calls counted by
               forward hooks, per sampler call), sample_ms_per_100 (+ _std; mean over
               timing_repeats runs after timing_warmup runs, batch 100), forward_ms_per_100 (one
               network call at batch 100), sampler_efficiency = nfe_measured * forward_ms_per_100
               / sample_ms_per_100 (1.0 = all time in the network)
Toy quality    hq_fraction (share within 3 std of a mode), swd (sliced Wasserstein-1 to fresh
               data, data units)
Toy coverage   modes (covered modes), mode_kl (KL of the mode histogram to uniform, nats)
Likelihood     bpd (bits/dim of the test split under the method's likelihood bound; image data only,
               the number of images is in `notes`; empty with a note for methods without one)
Image quality  fid (Frechet Inception distance, pool3, to the reference set of training images),
               kid, kid_std (kernel Inception distance, cubic kernel, mean/std over 100 subsets),
               is, is_std (Inception Score, 10 splits; empty when the Inception weights have no
               real logits), precision (k = 3; the feature space is named in spec.json and the
               report: VGG16 fc2, or Inception pool3 when VGG16 is unavailable),
               inception_samples / reference_samples (the set sizes these used)
Image coverage recall (same features and k as precision); StackedMNIST: modes (distinct digit
               triples of 1000 among the samples, each channel read by the bench classifier) and
               mode_kl (KL of the triple histogram to uniform(1000), nats)
Domain         fd_classifier (Frechet distance in the bench MNIST-family classifier's
               penultimate features), is_classifier (Inception-style score from that
               classifier's softmax): MNIST-family only, NOT Inception FID/IS
Provenance     run_id, checkpoint_step, weights_sha256 (of the checkpoint's weight files; a row is
               reused by a later `bench compare` only when it matches the checkpoint there; "exact"
               for a model with no weights), sampler_settings (JSON), device, torch_threads, git_sha,
               timestamp, notes (why a metric is empty)
Empty cells mean "does not apply / unavailable"; `notes` says which and why.
"""

IDENTITY = ["method", "label", "variant", "model", "steps", "nfe_target", "seed", "num_samples"]
SPEED = ["nfe_declared", "nfe_measured", "sample_ms_per_100", "sample_ms_per_100_std", "forward_ms_per_100",
         "sampler_efficiency", "timing_warmup", "timing_repeats"]
TOY = ["modes", "hq_fraction", "mode_kl", "swd"]
LIKELIHOOD = ["bpd"]
IMAGE = ["fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "fd_classifier", "is_classifier",
         "inception_samples", "reference_samples"]
PROVENANCE = ["run_id", "checkpoint_step", "weights_sha256", "sampler_settings", "device", "torch_threads", "git_sha",
              "timestamp",
              "notes"]

COLUMNS = IDENTITY + SPEED + TOY + IMAGE + LIKELIHOOD + PROVENANCE

INTEGER = ["steps", "nfe_target", "seed", "num_samples", "nfe_declared", "nfe_measured", "timing_warmup", "timing_repeats", "modes",
           "inception_samples", "reference_samples", "checkpoint_step", "torch_threads"]

FLOOR_METHOD = "data"  # the floor row: fresh real data scored like a method


def safe_name(label: str) -> str:
    """A row label (or any name) as a file-name part: results/<suite>/samples/<safe_name(label)>.npz."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
