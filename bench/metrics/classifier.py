"""The MNIST-family domain classifier that `bench` trains itself (one command, cached).

A small CNN on 28x28 digits. It gives
- StackedMNIST's mode coverage: each RGB channel classified as a digit, a sample's mode
  is the triple (100 d_R + 10 d_G + d_B), see bench/metrics/modes.py;
- fast domain metrics for MNIST-family data: a Frechet distance in its penultimate
  (128-d) features and an Inception-style score from its softmax, named
  `fd_classifier` / `is_classifier` so nobody mistakes them for Inception FID/IS.

Cache: <cache_dir>/classifier/<dataset>-v<VERSION>.safetensors (weights only, never
code) and a .json beside it (version, test accuracy, fingerprint of the training data,
sha256 of the weights). A cached classifier is used only when the version, the data
fingerprint and the weights checksum all match; otherwise it is trained again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from bench.errors import BenchError
from bench.files import atomic_write_text, file_sha256

VERSION = 1  # bump when the architecture or the training recipe changes
INPUT_SIZE = 28
FEATURES = 128
SOURCES = ("mnist", "fashion-mnist")  # datasets a classifier can be trained on
EPOCHS = 3
BATCH = 128
LR = 2e-3
SEED = 0
MAX_SHIFT = 2  # training augmentation: random translations of up to 2 px


class DigitNet(nn.Module):
    """LeNet-style: conv5x5(1->16)-BN-ReLU-pool, conv5x5(16->32)-BN-ReLU-pool, fc(512->128)-ReLU [features],
    dropout, fc(128->10); about 1.1M multiply-adds per image, so it trains in minutes on a CPU."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 5, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(32 * 4 * 4, FEATURES)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


def to_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, H, W) -> float (N, 1, 28, 28) in [0, 1]: padded digits are centre-cropped
    back to 28 px (the exact inverse of bench.data.images.resize), other sizes resized."""
    x = x_uint8.float() / 255.0
    h = x.shape[-1]
    if h > INPUT_SIZE and (h - INPUT_SIZE) % 2 == 0:
        lo = (h - INPUT_SIZE) // 2
        return x[..., lo:lo + INPUT_SIZE, lo:lo + INPUT_SIZE]
    if h != INPUT_SIZE:
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return x


def fingerprint(*tensors: torch.Tensor) -> str:
    """sha256 (16 hex digits) of the tensors' bytes: identifies exactly which data was used."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random integer translations per image (zero fill), by padding and cropping."""
    n = len(x)
    pad = F.pad(x, (MAX_SHIFT,) * 4)
    dx, dy = (torch.randint(0, 2 * MAX_SHIFT + 1, (n,), generator=gen) for _ in range(2))
    rows = (dy[:, None] + torch.arange(INPUT_SIZE))[:, :, None]
    cols = (dx[:, None] + torch.arange(INPUT_SIZE))[:, None, :]
    return pad[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def predict(net: DigitNet, x_uint8: torch.Tensor, *, device: torch.device, batch: int = 1000
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, 10), penultimate features (N, 128)) in float64 on the CPU, in eval mode."""
    net.eval()
    logits, feats = [], []
    for chunk in x_uint8.split(batch):
        f = net.features(to_input(chunk).to(device))
        feats.append(f.double().cpu())
        logits.append(net.head(f).double().cpu())
    return torch.cat(logits), torch.cat(feats)


def accuracy(net: DigitNet, x: torch.Tensor, y: torch.Tensor, *, device: torch.device) -> float:
    logits, _ = predict(net, x, device=device)
    return float((logits.argmax(1) == y).double().mean())


def train_net(train_x: torch.Tensor, train_y: torch.Tensor, *, device: torch.device,
              log: Callable[[str], None], epochs: int = EPOCHS, seed: int = SEED) -> DigitNet:
    """Adam with one-cycle learning rate, random 2-px shifts; deterministic for a seed."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = DigitNet().to(device)
    steps = epochs * (len(train_x) // BATCH)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    x_all = to_input(train_x)
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(train_x), generator=gen)
        for i in range(len(train_x) // BATCH):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            x = _shift(x_all[idx], gen).to(device)
            loss = F.cross_entropy(net(x), train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log(f"  classifier epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.4f}")
    return net.eval()


@dataclasses.dataclass
class Classifier:
    """A trained DigitNet and its record (version, dataset, test accuracy, fingerprints)."""

    net: DigitNet
    info: dict
    device: torch.device

    def predict(self, x_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return predict(self.net, x_uint8, device=self.device)


def _paths(cache_dir: Path, source: str) -> tuple[Path, Path]:
    folder = Path(cache_dir) / "classifier"
    return folder / f"{source}-v{VERSION}.safetensors", folder / f"{source}-v{VERSION}.json"


def _load_cached(cache_dir: Path, source: str, data_fp: str, device: torch.device) -> Classifier | None:
    weights, record = _paths(cache_dir, source)
    if not weights.exists() or not record.exists():
        return None
    try:
        info = json.loads(record.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if info.get("version") != VERSION or info.get("data_fingerprint") != data_fp \
            or info.get("weights_sha256") != file_sha256(weights):
        return None
    net = DigitNet()
    net.load_state_dict(load_file(weights))
    return Classifier(net.to(device).eval(), info, device)


def load_or_train(source: str, data, *, cache_dir: Path | None, device: torch.device,
                  log: Callable[[str], None], retrain: bool = False) -> Classifier:
    """The classifier for `source` (mnist | fashion-mnist) given its loaded ImageData at 28 px."""
    if source not in SOURCES:
        raise BenchError(f"no domain classifier for {source!r}; choose from: {', '.join(SOURCES)}")
    if data.shape != (1, INPUT_SIZE, INPUT_SIZE):
        raise BenchError(f"the {source} classifier trains on native 1x28x28 images, got {data.shape}")
    data_fp = fingerprint(data.train_x, data.train_y)
    if cache_dir is not None and not retrain:
        cached = _load_cached(cache_dir, source, data_fp, device)
        if cached is not None:
            return cached
    log(f"training the {source} classifier for the domain metrics (once; cached in {cache_dir or 'memory only'})")
    t0 = time.perf_counter()
    net = train_net(data.train_x, data.train_y, device=device, log=log)
    seconds = time.perf_counter() - t0
    acc = accuracy(net, data.test_x, data.test_y, device=device)
    log(f"  {source} classifier: test accuracy {acc:.4f} after {seconds:.0f} s")
    info = {"version": VERSION, "dataset": source, "test_accuracy": acc, "test_images": len(data.test_x),
            "data_fingerprint": data_fp, "epochs": EPOCHS, "seed": SEED, "train_seconds": round(seconds, 1),
            "architecture": DigitNet.__doc__}
    if cache_dir is not None:
        weights, record = _paths(cache_dir, source)
        weights.parent.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_name(f".{weights.name}.tmp{os.getpid()}")
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, tmp)
        os.replace(tmp, weights)
        info["weights_sha256"] = file_sha256(weights)
        atomic_write_text(record, json.dumps(info, indent=2))
    return Classifier(net, info, device)
