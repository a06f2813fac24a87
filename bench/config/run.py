"""Run configuration: frozen dataclasses resolved in layers, strictly.

    dataclass defaults < preset (TOML) < --config file < flags (--T ...) < --set key=value

Keys are dotted paths: `train.steps`, `model.T`, `model.net.hidden`, `data.seed`.
A bare key (`steps`) is accepted when exactly one section has it. Unknown keys and
values of the wrong type are errors that list what is valid.

Runs may depend on runs (a reflow student on its teacher, a distilled model on its
diffusion model): a model's `parents(cfg)` names them, and each parent is resolved from
the same preset and data as the child, with the parent's own overrides (never the
child's flags). The parents' run ids enter the child's run id, so a changed parent is a
different child, never a silent mix.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import methods
from bench.config.datasets import get_dataset_info
from bench.config.identity import NOT_MEASURED, identity, never_fields, short_hash
from bench.config.presets import load_config_file, load_preset
from bench.config.values import build, deep_update, flatten, qualify, unflatten
from bench.errors import BenchError

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass


@dataclasses.dataclass(frozen=True)
class DataConfig:
    name: str = "gaussians25"
    # image datasets: folder holding the files (else BENCH_DATA_DIR)
    root: str = dataclasses.field(default="", metadata=NOT_MEASURED)
    num_train: int = 100_000  # toy data: size of the seeded training set
    seed: int = 0  # toy data: seed of the training set
    resolution: int = 0  # images: side length after padding/resizing; 0 keeps the native size
    # images: let torchvision download missing files (needs a network)
    download: bool = dataclasses.field(default=False, metadata=NOT_MEASURED)
    hflip: bool = False  # images: random horizontal flips while training
    # images: "" pixel space; "autoencoder" (the preset's autoencoder on this data, trained first) or an
    # autoencoder run folder: train and sample in its scaled latent space (bench/runs/stage.py). Out of the run
    # id: a latent run is named by its autoencoder's run id (parents.autoencoder)
    latent: str = dataclasses.field(default="", metadata=NOT_MEASURED)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 5000
    batch_size: int = 512
    lr_schedule: str = "constant"  # constant | cosine (to lr_min)
    warmup_steps: int = 0
    lr_min: float = 0.0
    grad_clip: float = 1.0  # max global grad norm per optimizer; 0 disables
    ema_decay: float = 0.999
    seed: int = 0
    mixed_precision: str = "no"  # no | fp16 | bf16 (accelerate)
    ckpt_every: int = dataclasses.field(default=1000, metadata=NOT_MEASURED)
    keep_checkpoints: int = dataclasses.field(default=2, metadata=NOT_MEASURED)
    log_every: int = dataclasses.field(default=100, metadata=NOT_MEASURED)
    # samples drawn for preview.png at the end; 0 skips
    preview_samples: int = dataclasses.field(default=1000, metadata=NOT_MEASURED)
    # sampler steps for the preview; 0: the model's largest valid count
    preview_steps: int = dataclasses.field(default=0, metadata=NOT_MEASURED)
    # steps between held-out evaluations of the model's eval_metrics (VDM: bits/dim); 0 disables
    eval_every: int = dataclasses.field(default=0, metadata=NOT_MEASURED)
    # held-out examples per evaluation (images: the first n of the test split)
    eval_samples: int = dataclasses.field(default=1000, metadata=NOT_MEASURED)
    # "" | tensorboard: also log every stats.jsonl record to an Accelerate tracker (run_dir/logs)
    log_with: str = dataclasses.field(default="", metadata=NOT_MEASURED)


# Fields that do not change what is trained (their metadata says "never"): out of the run id and of mismatch checks.
CADENCE_KEYS = frozenset([f"data.{k}" for k in never_fields(DataConfig)]
                         + [f"train.{k}" for k in never_fields(TrainConfig)])


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model_name: str  # the model's registry name; config.json and the run id keep the key "method"
    preset: str
    model: Any  # the model's Config dataclass
    data: DataConfig
    train: TrainConfig
    parents: tuple[tuple[str, "RunConfig"], ...] = ()  # (role, config) of the runs this one is built from

    def own_dict(self) -> dict[str, Any]:
        return {"method": self.model_name, "preset": self.preset, "model": dataclasses.asdict(self.model),
                "data": dataclasses.asdict(self.data), "train": dataclasses.asdict(self.train)}

    def to_dict(self) -> dict[str, Any]:
        d = self.own_dict()
        if self.parents:
            d["parents"] = {role: p.to_dict() for role, p in self.parents}
        return d

    def parent(self, role: str) -> "RunConfig":
        return dict(self.parents)[role]

    def semantic_dict(self) -> dict[str, Any]:
        """What determines the trained weights, flat: every field the identity rule keeps (bench/config/identity.py:
        no paths or cadence, fields added later only when set) and each parent's run id."""
        own = {"method": self.model_name, "preset": self.preset, "model": identity(self.model),
               "data": identity(self.data), "train": identity(self.train)}
        flat = flatten(own)
        flat.update({f"parents.{role}": p.run_id() for role, p in self.parents})
        return {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}

    def run_id(self) -> str:
        return short_hash(self.semantic_dict())

    def run_name(self, key_params: tuple[str, ...] = ()) -> str:
        """`<run id>-<model>-<dataset slug><key params>`: one path component, whatever the dataset name
        holds (`folder:PATH` becomes `folder-<last part of PATH>`; the run id hashes the full path)."""
        keys = "".join(f"-{k}{getattr(self.model, k)}" for k in key_params)
        latent = "-latent" if self.data.latent else ""
        return _slug(f"{self.run_id()}-{self.model_name}-{dataset_slug(self.data.name)}{latent}{keys}")


def _slug(text: str, limit: int = 120) -> str:
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).replace("..", "_")
    return out[:limit].strip(".") or "run"


def dataset_slug(name: str) -> str:
    """A dataset name as a file-name part: `folder:/a/b/cats/` -> `folder-cats`."""
    if ":" not in name:
        return _slug(name, 40)
    kind, _, path = name.partition(":")
    last = [part for part in path.replace("\\", "/").split("/") if part and part not in (".", "..")]
    return _slug(f"{kind}-{last[-1] if last else 'root'}", 40)


def resolve_run_config(model: str, *, model_cls: type, preset: str, dataset: str | None = None,
                       config_file: str | Path | None = None, flags: dict[str, Any] | None = None,
                       sets: dict[str, Any] | None = None) -> RunConfig:
    """Layer defaults < preset < config file < flags < --set and build a RunConfig."""
    sections = {"model": model_cls, "data": DataConfig, "train": TrainConfig}
    values = load_preset(preset, model)
    if config_file is not None:
        values = deep_update(values, load_config_file(config_file))
    if dataset is not None:
        values = deep_update(values, {"data": {"name": dataset}})
    for layer in (flags or {}, sets or {}):
        values = deep_update(values, unflatten(qualify(layer, sections)))
    cfg = RunConfig(model_name=model, preset=preset, model=build(model_cls, values.get("model", {}), "model."),
                    data=build(DataConfig, values.get("data", {}), "data."),
                    train=build(TrainConfig, values.get("train", {}), "train."))
    return dataclasses.replace(cfg, parents=_resolve_parents(cfg))


def _resolve_parents(cfg: RunConfig) -> tuple[tuple[str, RunConfig], ...]:
    """Each parent named by the model, on the child's preset and data, with its own overrides."""

    try:
        wanted = methods.get_model(cfg.model_name).parents(cfg.model)
    except ValueError as e:
        raise BenchError(f"{cfg.model_name}: {e}") from None
    data = {f"data.{k}": v for k, v in dataclasses.asdict(cfg.data).items()}
    out = []
    if cfg.data.latent:

        out.append(("autoencoder", autoencoder_parent(cfg)))
    for role, (model, sets) in wanted.items():
        try:
            cls = methods.get_model(model)
        except ValueError as e:
            raise BenchError(f"{cfg.model_name}'s {role}: {e}") from None
        out.append((role, resolve_run_config(model, model_cls=cls.Config, preset=cfg.preset,
                                             sets={**data, **sets})))
    return tuple(out)


def run_config_from_dict(d: dict[str, Any], model_cls: type) -> RunConfig:
    """Rebuild a RunConfig (and its parents) from a run's config.json."""

    parents = tuple((role, run_config_from_dict(p, methods.get_model(p["method"]).Config))
                    for role, p in d.get("parents", {}).items())
    return RunConfig(model_name=d["method"], preset=d.get("preset", ""), model=build(model_cls, d["model"], "model."),
                     data=build(DataConfig, d["data"], "data."), train=build(TrainConfig, d["train"], "train."),
                     parents=parents)


def diff_configs(a: RunConfig, b: RunConfig, *, ignore: frozenset[str] = CADENCE_KEYS) -> list[str]:
    """Human-readable differences between two run configs (semantic keys only)."""
    def flat(c: RunConfig) -> dict[str, Any]:
        return {**flatten(c.own_dict()), **{f"parents.{role}": p.run_id() for role, p in c.parents}}

    fa, fb = flat(a), flat(b)
    keys = sorted((set(fa) | set(fb)) - ignore)
    return [f"{k}: {fa.get(k)!r} != {fb.get(k)!r}" for k in keys if fa.get(k) != fb.get(k)]


MAX_SEED = 2**31 - 1
TRACKERS = ("", "tensorboard")  # Accelerate trackers `train.log_with` may name ("" = none)
MAX_WIDTH = 16_384  # widest layer any network may ask for (a 2-D MLP of 16k units is already ~0.5 G weights)
WIDTH_KEYS = {"hidden", "emb_dim", "z_emb_dim", "t_emb_dim", "nz", "nf", "ngf", "channels"}


def validate_run(cfg: RunConfig) -> None:
    """What every run needs, whatever its model: a valid train section, data of at least one example,
    seeds in range, and positive learning rates (every model field named lr or lr_*)."""
    validate_train(cfg.train)
    if not 0 <= cfg.data.seed <= MAX_SEED:
        raise BenchError(f"data.seed must be in 0..{MAX_SEED}, got {cfg.data.seed}")
    if cfg.data.num_train < 1:
        raise BenchError(f"data.num_train must be >= 1, got {cfg.data.num_train}")
    for key, value in flatten(dataclasses.asdict(cfg.model)).items():
        leaf = key.rsplit(".", 1)[-1]
        if (leaf == "lr" or leaf.startswith("lr_")) and isinstance(value, float) and not value > 0:
            raise BenchError(f"model.{key} must be > 0, got {value}")
        if leaf in WIDTH_KEYS:
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(v, int) and not 1 <= v <= MAX_WIDTH:
                    raise BenchError(f"model.{key} must be in 1..{MAX_WIDTH} (a layer width), got {v}")
    for _, parent in cfg.parents:
        validate_run(parent)


def validate_train(cfg: TrainConfig) -> None:
    checks = [
        (0 <= cfg.seed <= MAX_SEED, f"train.seed must be in 0..{MAX_SEED}"),
        (cfg.steps >= 1, "train.steps must be >= 1"),
        (cfg.batch_size >= 1, "train.batch_size must be >= 1"),
        (cfg.lr_schedule in {"constant", "cosine"}, "train.lr_schedule must be constant or cosine"),
        (0.0 <= cfg.ema_decay < 1.0, "train.ema_decay must be in [0, 1)"),
        (cfg.ckpt_every >= 1, "train.ckpt_every must be >= 1"),
        (cfg.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
        (cfg.log_every >= 1, "train.log_every must be >= 1"),
        (cfg.mixed_precision in {"no", "fp16", "bf16"}, "train.mixed_precision must be no, fp16 or bf16"),
        (cfg.grad_clip >= 0, "train.grad_clip must be >= 0"),
        (cfg.warmup_steps >= 0, "train.warmup_steps must be >= 0"),
        (cfg.eval_every >= 0, "train.eval_every must be >= 0 (0 disables held-out evaluation)"),
        (cfg.eval_samples >= 1, "train.eval_samples must be >= 1"),
        (cfg.log_with in TRACKERS, f"train.log_with must be one of: {', '.join(repr(t) for t in TRACKERS)}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise BenchError(msg)


def is_path(latent: str) -> bool:
    return latent != "autoencoder"


def latent_option(latent: str) -> str:
    """`--latent` as data.latent: 'autoencoder', or the absolute path of a run folder (a run's config.json then
    names its autoencoder wherever it is read from)."""
    return latent if not is_path(latent) else str(Path(latent).expanduser().resolve())


def autoencoder_parent(cfg):
    """The autoencoder RunConfig a latent run is built on: `data.latent = "autoencoder"` resolves the preset's
    autoencoder on the same data (in pixel space); a run folder gives its own config.json."""

    latent = cfg.data.latent
    if cfg.model_name == "autoencoder":
        raise BenchError("an autoencoder trains in pixel space: drop data.latent (--latent) from its run")
    path = Path(latent).expanduser()
    if is_path(latent) and not (path / "config.json").is_file():
        raise BenchError(f"data.latent={latent!r} is neither 'autoencoder' nor a run folder (no config.json there);"
                         " give --latent autoencoder or the folder `bench train autoencoder` wrote")
    if get_dataset_info(cfg.data.name).kind != "image":
        raise BenchError(f"data.latent needs image data; {cfg.data.name} is not an image dataset")
    if not is_path(latent):
        data = {f"data.{k}": v for k, v in dataclasses.asdict(cfg.data).items()}
        return resolve_run_config("autoencoder", model_cls=methods.get_model("autoencoder").Config,
                                  preset=cfg.preset, sets={**data, "data.latent": ""})
    ae = read_run_config(path)
    if ae.model_name != "autoencoder":
        raise BenchError(f"data.latent={latent}: that run is a {ae.model_name}, not an autoencoder")
    if ae.data.name != cfg.data.name or ae.data.resolution != cfg.data.resolution:
        raise BenchError(f"data.latent={latent}: that autoencoder was trained on {ae.data.name} at resolution"
                         f" {ae.data.resolution}, not on {cfg.data.name} at {cfg.data.resolution}")
    return dataclasses.replace(ae, data=dataclasses.replace(ae.data, root=cfg.data.root))


def run_dir_for(cfg: RunConfig, runs_dir: Path) -> Path:
    return Path(runs_dir) / cfg.run_name(methods.get_model(cfg.model_name).key_params)


def read_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    try:
        raw = json.loads(path.read_text())
        return run_config_from_dict(raw, methods.get_model(raw["method"]).Config)
    except FileNotFoundError:
        raise BenchError(f"{run_dir} is not a training run (no config.json); train one with `bench train`") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise BenchError(f"{path} is corrupt ({e}); delete the run folder and train again") from None
    except ValueError as e:
        raise BenchError(f"{path}: {e}") from None


CKPT_DIR = "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of interrupted saves are ignored)."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None
