"""Name -> class, for models (`register_model`) and samplers (`register_sampler`).

Registration validates a class, so a broken model or sampler fails at import time, not
halfway through a benchmark. A name may be both a model and a sampler (`ddpm`: the model,
and its ancestral sampler).
"""

from __future__ import annotations

import dataclasses

from methods.base import Model
from methods.prediction import KINDS
from methods.samplers.base import SamplerDef

_MODELS: dict[str, type[Model]] = {}
_SAMPLERS: dict[str, type] = {}
TIMES = ("discrete", "continuous", "trained")


def _frozen(conf) -> bool:
    return dataclasses.is_dataclass(conf) and conf.__dataclass_params__.frozen


def register_model(name: str):
    """Class decorator for a model: `@register_model("ddpm")`."""

    def wrap(cls: type[Model]) -> type[Model]:
        if not (isinstance(cls, type) and issubclass(cls, Model)):
            raise TypeError(f"{name}: registered object must subclass methods.base.Model")
        if name in _MODELS:
            raise ValueError(f"method {name!r} is registered twice")
        if not _frozen(getattr(cls, "Config", None)):
            raise TypeError(f"{name}: Config must be a frozen dataclass")
        if not cls.phases:
            raise TypeError(f"{name}: phases must name at least one optimizer")
        if cls.kind not in KINDS or cls.time not in TIMES:
            raise TypeError(f"{name}: kind must be one of {KINDS} and time one of {TIMES}")
        if "num_classes" in {f.name for f in dataclasses.fields(cls.Config)} and cls.kind != "eps" and cls.guided:
            raise TypeError(f"{name}: class-conditional models (Config.num_classes) must predict eps for classifier-free"
                            " guidance, which combines two eps predictions (methods/guidance.py); a model"
                            " conditional without guidance sets guided = False")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return wrap


def register_sampler(name: str):
    """Class decorator for a sampler: `@register_sampler("dpmpp-2m")`."""

    def wrap(cls):
        if not (isinstance(cls, type) and issubclass(cls, SamplerDef)):
            raise TypeError(f"{name}: registered object must subclass methods.samplers.base.SamplerDef")
        if name in _SAMPLERS:
            raise ValueError(f"sampler {name!r} is registered twice")
        if not _frozen(cls.Options):
            raise TypeError(f"{name}: Options must be a frozen dataclass")
        if not set(cls.kinds) <= set(KINDS) or not set(cls.times) <= set(TIMES):
            raise TypeError(f"{name}: kinds must be among {KINDS} and times among {TIMES}")
        if not cls.summary:
            raise TypeError(f"{name}: give a one-line summary")
        cls.name = name
        _SAMPLERS[name] = cls
        return cls

    return wrap


def get_model(name: str) -> type[Model]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    return sorted(_MODELS)


def get_sampler(name: str):
    try:
        return _SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose a sampler from: {', '.join(list_samplers())}") from None


def list_samplers() -> list[str]:
    return sorted(_SAMPLERS)


def samplers_for(model: str) -> list[str]:
    """The samplers that run on a model, its native sampler first."""
    cls = get_model(model)
    names = [n for n in list_samplers() if _SAMPLERS[n].runs_on(cls) is None]
    return sorted(names, key=lambda n: n != cls.native_sampler)
