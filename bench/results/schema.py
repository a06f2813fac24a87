"""The columns of results.csv, defined once. One row per (sampler, model, steps) cell, long format.

Identity       sampler (the sampler's registry name; `method` in results written before the rename, read
               through RENAMED), label, variant, model (the model's registry
               name: a trained checkpoint, or the exact-score oracle with no checkpoint_step), steps,
               nfe_target (the NFE budget the steps were chosen for; empty when steps were asked for),
               seed, num_samples
Grid           grid_axis (the cell's value on the grid axis, part of its identity; empty for the sampler's
               default grid), grid (the grid the row was sampled on, with its parameters: a sigma grid of
               methods/grids.py, or a diffusers timestep spacing), final_sigma (the noise level the samples
               were left at: 0, or sigma_min for final = none, or sigma(t = 0) for DEIS on a spacing); the
               whole list of sigmas is in sampler_settings
Speed          nfe_declared (what the sampler says), nfe_measured (network calls counted by
               forward hooks, per sampler call), sample_ms_per_100 (median over timing_repeats
               rounds after timing_warmup rounds, batch 100; + _iqr, the interquartile range),
               forward_ms_per_100 (one network call at batch 100, timed in the same rounds; the
               calls-weighted mean over the networks a sampler calls), sampler_efficiency (median
               over rounds of network time / sampler time; 1.0 = all time in the networks; + _iqr),
               sample_ref_per_100 (median over rounds of sampler time / a fixed reference workload's
               time in the same round: machine-speed units, for speed-ups that survive drift between
               minutes), reference_ms (that workload's median time; bench/measure/timing.py),
               timing_flag ("measurement error" when the efficiency came out above 1 twice: the
               timing is not a result; bench/measure/timing.py), decode_ms_per_100 (a latent row's decoder
               alone, batch 100, same protocol: the part of sample_ms_per_100 that decoding costs),
               train_s (the checkpoint's training wall-clock in seconds, from its stats.jsonl; parents and
               the autoencoder not included)
Toy quality    hq_fraction (share within 3 std of a mode), swd (sliced Wasserstein-1 to fresh
               data, data units)
Toy coverage   modes (covered modes), mode_kl (KL of the mode histogram to uniform, nats); every toy metric
               registered in bench/metrics/ has its columns in this block, in the order its kind and position give
Conditional    guidance (a class-conditional model's w, or "uncond" for the null class; empty for
               unconditional models; part of a row's identity), guidance_scale (diffusers' convention,
               1 + w), classes (what was asked: uniform, class k, null class), cond_accuracy (share of
               samples landing in their requested class: toys, the nearest mixture mean; MNIST family,
               the bench classifier), classes_covered / classes_asked (requested classes whose samples
               land in them for at least 20% of their samples; bench/metrics/conditional.py)
Likelihood     bpd (bits/dim of the test split under the model's likelihood bound; image data only,
               the number of images is in `notes`; empty with a note for models without one)
Image quality  fid (Frechet Inception distance, pool3, to the reference set of training images),
               kid, kid_std (kernel Inception distance, cubic kernel, mean/std over 100 subsets),
               is, is_std (Inception Score, 10 splits; empty when the Inception weights have no
               real logits), precision (k = 3; the feature space is named in spec.json and the
               report: VGG16 fc2, or Inception pool3 when VGG16 is unavailable),
               inception_samples / reference_samples (the set sizes these used)
Image coverage recall (same features and k as precision); StackedMNIST: modes (distinct digit
               triples of 1000 among the samples, each channel read by the bench classifier) and
               mode_kl (KL of the triple histogram to uniform(1000), nats)
Exact score    nn_dist (the data oracle's rows: mean L2 distance, model space [-1, 1], from each 8-bit sample to
               the nearest of the oracle's n training images; an exact solver's samples are training images, so
               this is the solver's error at image dimension)
Domain         fd_classifier (Frechet distance in the bench MNIST-family classifier's
               penultimate features), is_classifier (Inception-style score from that
               classifier's softmax): MNIST-family only, NOT Inception FID/IS
Intervals      bootstrap (resamples, when the grid asks for them), bootstrap_ci (JSON {metric: [lo,
               hi]}: 95% percentile interval over resampled samples of this row; training noise is
               the seeds axis, summarised in summary.csv by bench/results/stats.py)
Latent         latent (the autoencoder run a latent row's model trains and samples in; empty in pixel
               space), latent_scale (its scaling factor s = 1 / std of the training latents,
               bench/runs/stage.py), latent_train_s (the autoencoder's training wall-clock, seconds). The floor row `reconstructions (floor)` (model = the autoencoder run)
               scores the autoencoder's reconstructions of the data floor's real test images
Provenance     run_id, checkpoint_step, weights_sha256 (of the checkpoint's weight files; a row is
               reused by a later `bench compare` only when it matches the checkpoint there; "exact"
               for a model with no weights), sampler_settings (JSON), network_precision (fp32 | bf16: how the
               networks ran while sampling) and network_compile (torch.compile of their forwards;
               bench/measure/runtime.py), device,
               torch_threads, cpu_affinity
               (the CPUs the process could run on), git_sha,
               timestamp, notes (why a metric is empty)
Empty cells mean "does not apply / unavailable"; `notes` says which and why.
The metric columns, METRICS and INTEGER's metric part are derived from the metric registry
(bench/metrics/registry.py): each metric registers its header, group, direction, format and
feature space once, and its columns take their place in their kind's block below.
"""

import math

from bench.metrics.catalog import Metric, integer_columns, list_metrics, metric_columns, report_key

IDENTITY = ["sampler", "label", "variant", "model", "steps", "guidance", "grid_axis", "nfe_target", "seed", "num_samples"]
GRID = ["grid", "final_sigma"]
SPEED = ["nfe_declared", "nfe_measured", "sample_ms_per_100", "sample_ms_per_100_iqr", "forward_ms_per_100",
         "sampler_efficiency", "sampler_efficiency_iqr", "sample_ref_per_100", "reference_ms", "timing_warmup",
         "timing_repeats", "timing_flag", "decode_ms_per_100", "train_s"]
TOY = metric_columns("toy")
CONDITIONAL = ["guidance_scale", "classes"] + metric_columns("conditional")
LIKELIHOOD = metric_columns("likelihood")
INTERVALS = ["bootstrap", "bootstrap_ci"]
SET_SIZES = ["inception_samples", "reference_samples"]  # the set sizes the Inception metrics used
IMAGE = metric_columns("image") + metric_columns("classifier") + SET_SIZES + metric_columns("exact")
LATENT = ["latent", "latent_scale", "latent_train_s"]
PROVENANCE = ["run_id", "checkpoint_step", "weights_sha256", "sampler_settings", "network_precision", "network_compile",
              "device",
              "torch_threads",
              "cpu_affinity", "git_sha", "timestamp", "notes"]

COLUMNS = IDENTITY + GRID + SPEED + TOY + IMAGE + CONDITIONAL + LIKELIHOOD + INTERVALS + LATENT + PROVENANCE

# integer columns: these, and the metric columns registered as integers (modes, classes_covered, ...)
FIXED_INTEGER = {"steps", "nfe_target", "seed", "num_samples", "nfe_declared", "nfe_measured", "timing_warmup",
                 "timing_repeats", "inception_samples", "reference_samples", "checkpoint_step", "torch_threads",
                 "bootstrap"}
_integer = FIXED_INTEGER | integer_columns()
INTEGER = [c for c in COLUMNS if c in _integer]  # in COLUMNS order

METRICS: list[Metric] = sorted(list_metrics(), key=report_key)  # the report's order
METRIC = {m.column: m for m in METRICS}
assert len(set(COLUMNS)) == len(COLUMNS), "a registered metric column repeats a results column"
assert {c for m in METRICS for c in m.columns} <= set(COLUMNS), "a metric kind has no block in COLUMNS"

FLOOR = "data"  # the floor row: fresh real data scored like a model's samples


def key_text(v) -> str:
    """A cell of an identity column as text: empty for None / NaN, integers without ".0" (CSV round trips
    turn '' into NaN and ints into floats), so rows read back match the rows written."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


RENAMED = {"method": "sampler"}  # columns of results written before a rename: old name -> new name


def upgrade_columns(df):
    """A results table with today's column names: committed results written before a rename stay readable."""
    return df.rename(columns={old: new for old, new in RENAMED.items() if old in df and new not in df})
