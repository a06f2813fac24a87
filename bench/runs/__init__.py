"""Training runs: the training loop, checkpoints, run folders, the autoencoder stage, diffusers import and export."""
