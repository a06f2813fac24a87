"""Datasets: the registry, toy mixtures, image folders, latent data."""
