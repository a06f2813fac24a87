"""bench: train, sample and measure fast diffusion samplers on one harness."""

__version__ = "0.1.0"
