"""What each CLI command does, as plain functions (the CLI only parses options).
The environment (BENCH_* variables) is read by the CLI and arrives here as arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import methods
from bench.config import list_presets, parse_sets, resolve_run_config
from bench.data import DATASETS, get_dataset_info
from bench.errors import BenchError
from bench.runs import run_dir_for
from bench.spec import list_suites, load_suite, parse_int_list, parse_names, resolve_compare_spec


def _method(name: str) -> type[methods.Method]:
    try:
        return methods.get_method(name)
    except ValueError as e:
        raise BenchError(str(e)) from None


def train_command(method: str, *, dataset: str | None, preset: str | None, config: Path | None, T: int | None,
                  sets: list[str], out: Path | None, resume: bool, runs_dir: Path, data_dir: str, progress: bool,
                  log: Callable[[str], None]) -> Path:
    from bench.train import train

    cls = _method(method)
    if cls.trained_as is not None:
        raise BenchError(f"{method} is a sampler over {cls.trained_as} checkpoints: run `bench train {cls.trained_as}`")
    if dataset is not None:
        get_dataset_info(dataset)
    flags = {}
    if T is not None:
        if "T" not in cls.Config.__dataclass_fields__:
            raise BenchError(f"--T does not apply to {method}: it has no discrete T"
                             f"{' (continuous time; choose steps when sampling)' if method == 'vdm' else ''}")
        flags["model.T"] = T
    if data_dir:
        flags["data.root"] = data_dir
    preset = preset or get_dataset_info(dataset or "gaussians25").preset
    cfg = resolve_run_config(method, model_cls=cls.Config, preset=preset, dataset=dataset, config_file=config,
                             flags=flags, sets=parse_sets(sets))
    run_dir = Path(out) if out is not None else run_dir_for(cfg, runs_dir)
    return train(cfg, run_dir, resume=resume, progress=progress, log=log)


def compare_command(*, suite: str | None, methods: str | None, dataset: str | None, steps: str | None,
                    num_samples: int | None, seed: int | None, out: Path | None, device: str, runs_dir: Path,
                    data_dir: str, progress: bool, log: Callable[[str], None]) -> tuple[Path, Path]:
    from bench.runner import compare

    if device not in {"auto", "cpu", "cuda"} and not device.startswith("cuda:"):
        raise BenchError(f"--device must be auto, cpu or cuda, got {device!r}")
    spec = resolve_compare_spec(suite=suite, methods_=parse_names(methods, "--methods") if methods else None,
                                dataset=dataset, steps=parse_int_list(steps, "--steps") if steps else None,
                                num_samples=num_samples, seed=seed, data_root=data_dir)
    results_dir = Path(out) if out else Path("results") / spec.name
    report_dir = Path(out) if out else Path("reports") / spec.name
    compare(spec, runs_dir=runs_dir, results_dir=results_dir, report_dir=report_dir, device=device,
            progress=progress, log=log)
    return results_dir, report_dir / "report.md"


def listing() -> str:
    lines = ["methods:"]
    for name in methods.list_methods():
        cls = methods.get_method(name)
        extra = f" (samples {cls.trained_as} checkpoints)" if cls.trained_as else ""
        lines.append(f"  {name:<12} {cls.summary}{extra}")
    lines.append("datasets:")
    lines += [f"  {d.name:<12} {d.description} [preset {d.preset}, suite {d.suite}]" for d in DATASETS.values()]
    lines.append("suites:")
    lines += [f"  {s:<12} {load_suite(s).get('description', '')}" for s in list_suites()]
    lines.append("presets:")
    lines += [f"  {p}" for p in list_presets()]
    return "\n".join(lines)
