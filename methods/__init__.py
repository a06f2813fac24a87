"""Pure-PyTorch generative methods behind one Method/Sampler contract.

Importing this package registers every method; see `methods.registry`.
This package never imports `bench`, accelerate, pandas, matplotlib or typer.
"""

from methods import ddgan, ddim, ddpm, vdm  # noqa: F401  (registration side effects)
from methods.base import LoopSampler, Method, ParamGroup, Sampler, StepRange
from methods.registry import get_method, list_methods, register_method

__all__ = ["LoopSampler", "Method", "ParamGroup", "Sampler", "StepRange", "get_method", "list_methods",
           "register_method"]
