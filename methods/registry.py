"""Name -> Method class. `register_method` validates a class when it is registered,
so a broken method fails at import time, not halfway through a benchmark."""

from __future__ import annotations

import dataclasses

from methods.base import Method

_METHODS: dict[str, type[Method]] = {}


def register_method(name: str):
    """Class decorator: `@register_method("ddpm")`."""

    def wrap(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"{name}: registered object must subclass methods.base.Method")
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        for attr in ("Config", "SamplerConfig"):
            conf = getattr(cls, attr, None)
            if conf is None and attr == "SamplerConfig":
                continue
            if not (dataclasses.is_dataclass(conf) and conf.__dataclass_params__.frozen):
                raise TypeError(f"{name}: {attr} must be a frozen dataclass")
        if not cls.phases:
            raise TypeError(f"{name}: phases must name at least one optimizer")
        if cls.trained_as is not None and cls.trained_as == name:
            raise TypeError(f"{name}: trained_as names itself; leave it None")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return wrap


def get_method(name: str) -> type[Method]:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from: {', '.join(list_methods())}") from None


def list_methods() -> list[str]:
    return sorted(_METHODS)
