"""The compare engine: sampling, timing, sharding, the latent decoder, measured orders."""
