"""Pure-PyTorch generative models and samplers, behind two registries.

Models (`methods/ddpm.py`, `vdm.py`, `ddgan.py`, `flow.py`, `cm.py`, `oracle.py`) train and expose a Prediction;
`autoencoder.py` is the stage of latent runs (trained, never sampled);
samplers (`methods/samplers/`) are small loops over it. Importing this package registers both.
This package never imports `bench`, accelerate, pandas, matplotlib or typer.
"""

from methods import autoencoder, cm, data_oracle, ddgan, ddpm, ect, edm, flow, meanflow, oracle, vdm  # noqa: F401  (registration side effects)
from methods.samplers import (ancestral, cm as cm_sampler, ddgan as ddgan_sampler, ddim, deis,  # noqa: F401
                              dpm_solver, edm as edm_samplers, flow as flow_samplers, ipndm, k_samplers,
                              meanflow as meanflow_sampler, pndm, unipc, vdm as vdm_sampler)
from methods.base import LoopSampler, Model, ParamGroup, Sampler, StepRange
from methods.registry import (get_model, get_sampler, list_models, list_samplers, register_model,
                              register_sampler, samplers_for)

__all__ = ["LoopSampler", "Model", "ParamGroup", "Sampler", "StepRange", "get_model", "get_sampler",
           "list_models", "list_samplers", "register_model", "register_sampler", "samplers_for"]
