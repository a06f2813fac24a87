"""Feature extractors from torch-fidelity: the FID Inception-v3 and VGG16, on uint8 images.

Weights: an explicit file (`--fid-weights`, `--vgg16-weights`), else the copy that
torch-fidelity / torchvision keep in the torch hub cache, else (only when downloads are
allowed) their own download. A file given by the user is first opened with
`torch.load(weights_only=True)`, so it must hold tensors only. The Inception file's
logits layer is checked: all-zero logits (as in offline copies of the FID network) make
the Inception Score unavailable, never 1.0.

Images go through the extractors exactly as torch-fidelity feeds them: uint8, resized
inside the network (TF-compatible bilinear to 299 or 224); grey images are repeated to
three channels. The networks run in eval mode, so features do not depend on the batch,
and in the channels-last memory layout (the same arithmetic in another order: features
agree to ~1e-6, and convolutions run about 1.6x faster on a CPU).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from bench.errors import BenchError
from bench.files import file_sha256
from bench.config.metric_options import MetricResources

INCEPTION = "inception-v3-compat"
POOL3 = "2048"
LOGITS = "logits_unbiased"  # torch-fidelity's layer for the Inception Score
VGG16 = "vgg16"
VGG16_LAYER = "fc2_relu"  # torch-fidelity's default layer for precision/recall
LABELS = {INCEPTION: "Inception pool3", VGG16: "VGG16 fc2"}


class Unavailable(Exception):
    """A feature extractor cannot be built here; the message says why (it goes into the notes)."""


@dataclasses.dataclass
class Extractor:
    name: str  # INCEPTION | VGG16
    layers: tuple[str, ...]
    weights: str  # the file the weights came from
    weights_sha256: str
    module: nn.Module
    device: torch.device
    batch: int

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def has_logits(self) -> bool:
        """True when the Inception logits layer carries real weights (IS is computable)."""
        fc = getattr(self.module, "fc", None)
        return fc is not None and bool(fc.weight.detach().abs().max() > 0)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (N, C, H, W), C in {1, 3} -> {layer: float32 (N, D)} on the CPU."""
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"{self.name} takes uint8 (N, 1|3, H, W) images, got {x.dtype} {tuple(x.shape)}")
        out: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        for chunk in x.split(self.batch):
            chunk = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
            feats = self.module(chunk.contiguous().to(self.device))
            for layer, f in zip(self.layers, feats):
                out[layer].append(f.float().cpu())
        return {layer: torch.cat(v) for layer, v in out.items()}

    def describe(self) -> dict:
        return {"extractor": self.name, "layers": list(self.layers), "weights": self.weights,
                "weights_sha256": self.weights_sha256}


def _hub_file(name: str) -> Path:
    """Where torch-fidelity (Inception) / torchvision (VGG16) keep their downloaded weights."""
    if name == INCEPTION:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3 as url
    else:
        import torchvision

        url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def check_weights_file(path: str, what: str) -> None:
    """A user-given weights file must exist and hold tensors only (no pickled code)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise BenchError(f"{what} {path} does not exist; give the weights file or leave it unset")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise BenchError(f"{what} {path} is not a state dict of tensors ({type(e).__name__})") from None
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise BenchError(f"{what} {path} is not a state dict of tensors")


def _weights_for(name: str, explicit: str, download: bool) -> str | None:
    """The weights file to use, or None to let the library download it; Unavailable if neither."""
    if explicit:
        check_weights_file(explicit, "--fid-weights" if name == INCEPTION else "--vgg16-weights")
        return str(Path(explicit).expanduser())
    cached = _hub_file(name)
    if cached.is_file():
        return str(cached)
    if download:
        return None
    flag = "--fid-weights / BENCH_FID_WEIGHTS" if name == INCEPTION else "--vgg16-weights / BENCH_VGG16_WEIGHTS"
    raise Unavailable(f"no {LABELS[name]} weights here and downloads are off: give {flag}")


def load_extractor(name: str, layers: tuple[str, ...], resources: MetricResources, device: torch.device
                   ) -> Extractor:
    """Build torch-fidelity's extractor `name` for `layers`; Unavailable (with the reason) if it cannot be."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

    explicit = resources.fid_weights if name == INCEPTION else resources.vgg16_weights
    path = _weights_for(name, explicit, resources.download)
    cls = FeatureExtractorInceptionV3 if name == INCEPTION else FeatureExtractorVGG16
    try:
        module = cls(name, list(layers), feature_extractor_weights_path=path, verbose=False)
    except RuntimeError as e:  # state dict does not fit the network
        if explicit:
            raise BenchError(f"{explicit} does not hold {LABELS[name]} weights ({str(e).splitlines()[0]})") from None
        raise Unavailable(f"{LABELS[name]} weights failed to load ({str(e).splitlines()[0]})") from None
    except Exception as e:  # downloads fail in many ways (no network, proxy, disk)
        raise Unavailable(f"downloading {LABELS[name]} weights failed ({type(e).__name__}); give"
                          f" {'--fid-weights' if name == INCEPTION else '--vgg16-weights'} with a local file") from None
    path = path or str(_hub_file(name))
    module = module.to(device).to(memory_format=torch.channels_last).eval()
    batch = resources.feature_batch or (250 if device.type == "cuda" else 50)
    return Extractor(name, tuple(layers), path, file_sha256(Path(path)), module, device, batch)
