"""`bench list`: the models, samplers, datasets, suites and presets, and which sampler runs on which model."""

from __future__ import annotations
import dataclasses
import methods
from bench.config.presets import list_presets
from bench.config.spec import list_suites, load_suite
from bench.config.datasets import DATASETS


def listing() -> str:
    lines = ["models (bench train NAME):"]
    for name in methods.list_models():
        cls = methods.get_model(name)
        cond = (", class-conditional with model.num_classes" + ("" if cls.guided else " (no guidance)")) if \
            "num_classes" in {f.name for f in dataclasses.fields(cls.Config)} else ""
        lines.append(f"  {name:<13} {cls.summary}" + (f" [{cls.kind}, {cls.time} time{cond}]" if cls.samplable else ""))
    lines.append("samplers (bench compare --samplers NAME [--model MODEL]):")
    for name in methods.list_samplers():
        lines.append(f"  {name:<13} {methods.get_sampler(name).summary}")
    lines += ["which sampler runs on which model (* = the sampler's default model):", *compatibility()]
    lines.append("datasets:")
    lines += [f"  {d.name:<12} {d.description} [preset {d.preset}, suite {d.suite}]" for d in DATASETS.values()]
    lines.append("suites:")
    lines += [f"  {s:<16} {load_suite(s).get('description', '')}" for s in list_suites()]
    lines.append("presets:")
    lines += [f"  {p}" for p in list_presets()]
    return "\n".join(lines)


def compatibility() -> list[str]:
    """A sampler x model table: yes, yes* (the default model) or no (stages such as the autoencoder are left out)."""
    models = [m for m in methods.list_models() if methods.get_model(m).samplable]
    rows = [["sampler", *models]]
    for name in methods.list_samplers():
        cls = methods.get_sampler(name)
        rows.append([name, *[("yes*" if m == cls.default_model else "yes")
                             if cls.runs_on(methods.get_model(m)) is None else "-" for m in models]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
