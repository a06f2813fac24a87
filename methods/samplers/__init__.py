"""Samplers, registered by name apart from the models they sample (methods/samplers/base.py).

One file per family; `import methods` registers every sampler (this package itself imports nothing):
ancestral.py (ddpm), ddim.py, dpm_solver.py (dpmpp-2m, dpmpp-3m, dpmpp-2s, dpmpp-2m-sde),
unipc.py, deis.py, k_samplers.py (euler, euler-a, heun, lms), pndm.py, vdm.py (VDM's ancestral
sampler), ddgan.py (DDGAN's trained-per-T sampler), flow.py (flow, midpoint, dopri5, fm-euler on
velocity models; euler and heun also run there), cm.py (consistency sampling), ipndm.py (iPNDM on a sigma
grid), edm.py (EDM's Algorithms 1 and 2: edm-heun, edm-sde), meanflow.py (MeanFlow's k-step sampler). sigma_loop.py is the loop every sampler shares on a sigma grid (methods/grids.py).
"""
