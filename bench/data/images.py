"""Image datasets, held in memory as uint8 (N, C, H, W); models see floats in [-1, 1].

- mnist, fashion-mnist: the idx files under <root>/MNIST/raw or <root>/FashionMNIST/raw,
  plain or .gz (read in memory, so a read-only root works); torchvision downloads them
  when `data.download` is true and a network is there.
- stackedmnist: three independent MNIST digits as the RGB channels (1000 modes, label
  100 d_R + 10 d_G + d_B); a fixed training set of `data.num_train` triples drawn with
  `data.seed` from MNIST train, and a test set of 26,000 triples (the mode-counting protocol's
  sample count, so the floor row follows it) drawn the same way from MNIST test digits.
- cifar10: torchvision's CIFAR10 under <root>/cifar-10-batches-py.
- folder:PATH: every png/jpg/jpeg/webp below PATH (recursive), resized on the shorter
  side and centre-cropped to `data.resolution`; every 10th file (sorted) is the test split.
  Its classes, for conditional models, are the first-level sub-folders (as torchvision's
  ImageFolder); images directly in PATH make it unlabelled.

`data.resolution` > native pads MNIST-family digits with background (28 -> 32, as the
32-px UNets and discriminators need) and resizes anything else.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.config.run import DataConfig
from bench.errors import BenchError

MNIST_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
STACKED_TEST_SIZE = 26_000  # StackedMNIST test triples: the paper's mode-counting sample count


@dataclasses.dataclass
class ImageData:
    """A dataset of uint8 images; `batch` serves training, `test_images` evaluation."""

    name: str
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor | None  # labels where the dataset has them (modes for stackedmnist)
    test_x: torch.Tensor
    test_y: torch.Tensor | None
    hflip: bool = False
    padded_from: int = 0  # the native side before padding with background (MNIST 28 -> 32), 0 if not padded
    classes: int = 0  # number of label values (0: unlabelled)
    mixture = None  # images have no exact mixture; see bench.metrics for their metrics

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_classes(self) -> int | None:
        """Classes of conditional training: 10 (MNIST family, CIFAR-10), 1000 digit triples (StackedMNIST),
        the sub-folders of a folder dataset; None: unlabelled."""
        return self.classes or None

    def labels(self, idx: torch.Tensor) -> torch.Tensor:
        return self.train_y[idx].long()

    def __len__(self) -> int:
        return len(self.train_x)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        x = to_model(self.train_x[idx])
        if self.hflip:  # the global torch RNG is seeded and checkpointed by the harness
            flip = torch.rand(len(x)) < 0.5
            x[flip] = x[flip].flip(-1)
        return x

    def eval_batch(self, n: int) -> torch.Tensor:
        """The first n test images in model space (a fixed held-out batch)."""
        return to_model(self.test_x[:n])

    def to_data(self, x_model: torch.Tensor) -> torch.Tensor:
        return to_uint8(x_model)


def to_model(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 {0..255} -> float [-1, 1]: x / 127.5 - 1 (the 256 levels the VLB decoder assumes)."""
    return x_uint8.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8, rounding to the nearest level (never JPEG, never truncation)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def read_idx(path: Path) -> torch.Tensor:
    """An MNIST idx file (plain or gzip) as a uint8 tensor."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise BenchError(f"{path} is not an unsigned-byte idx file (corrupt or wrong file)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise BenchError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return torch.from_numpy(data.reshape(dims).copy())


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def load_mnist_family(name: str, root: Path, *, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    folder = root / MNIST_FOLDERS[name] / "raw"
    files = [_find(folder, f) for f in MNIST_FILES[train]]
    if None in files and download:
        import torchvision

        cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception as e:  # network errors come in many types; say what to do instead
            raise BenchError(f"downloading {name} into {root} failed ({type(e).__name__}); put the files there"
                             " by hand or check the network") from None
        return ds.data.unsqueeze(1), ds.targets
    if None in files:
        missing = [f for f, p in zip(MNIST_FILES[train], files) if p is None]
        raise BenchError(f"{name}: {', '.join(missing)} (or .gz) not found in {folder}; put the idx files there,"
                         " point --data-dir/BENCH_DATA_DIR at their parent, or add --set data.download=true")
    images, labels = read_idx(files[0]), read_idx(files[1])
    return images.unsqueeze(1), labels.long()


def stack_digits(x: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images whose R, G, B channels are independent random digits; label = 100 d_R + 10 d_G + d_B."""
    idx = torch.randint(0, len(x), (n, 3), generator=torch.Generator().manual_seed(seed))
    images = torch.cat([x[idx[:, c]] for c in range(3)], dim=1)
    labels = 100 * y[idx[:, 0]] + 10 * y[idx[:, 1]] + y[idx[:, 2]]
    return images, labels


def load_cifar10(root: Path, *, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision

    if not (root / "cifar-10-batches-py").is_dir() and not download:
        raise BenchError(f"cifar10: {root / 'cifar-10-batches-py'} not found (data_batch_1..5, test_batch from"
                         " cifar-10-python.tar.gz); extract it there or add --set data.download=true")
    try:
        ds = torchvision.datasets.CIFAR10(str(root), train=train, download=download)
    except RuntimeError as e:
        raise BenchError(f"cifar10 under {root}: {e}") from None
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)


def folder_labels(path: Path, files: list[Path]) -> torch.Tensor | None:
    """Class of each file: the index of its first-level sub-folder (sorted names), as torchvision's
    ImageFolder; None when any image lies directly in `path` or there is only one sub-folder."""
    parts = [f.relative_to(path).parts for f in files]
    names = sorted({p[0] for p in parts})
    if any(len(p) < 2 for p in parts) or len(names) < 2:
        return None
    index = {n: i for i, n in enumerate(names)}
    return torch.tensor([index[p[0]] for p in parts])


def load_folder(path: Path, *, resolution: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor,
                                                         torch.Tensor | None]:
    """(train images, train labels, test images, test labels) of every image file below `path`; every
    10th sorted file is test; labels from sub-folders (`folder_labels`) or None."""

    if not path.is_dir():
        raise BenchError(f"folder dataset {path} does not exist; give folder:/path/to/images")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 10:
        raise BenchError(f"folder dataset {path} has {len(files)} images (png/jpg/jpeg/webp); it needs at least 10")
    if resolution <= 0:
        raise BenchError("folder datasets need a size: --set data.resolution=256 (or 64, 128, ...)")
    out = []
    for f in files:
        try:
            img = Image.open(f).convert("RGB")
        except OSError as e:
            raise BenchError(f"cannot read image {f}: {e}") from None
        scale = resolution / min(img.size)
        img = img.resize((max(resolution, round(img.width * scale)), max(resolution, round(img.height * scale))),
                         Image.BICUBIC)
        left, top = (img.width - resolution) // 2, (img.height - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
        out.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    x = torch.stack(out)
    test = torch.arange(len(x)) % 10 == 9
    y = folder_labels(path, files)
    return x[~test], None if y is None else y[~test], x[test], None if y is None else y[test]


def resize(x: torch.Tensor, resolution: int, *, pad: bool) -> torch.Tensor:
    """To `resolution`: pad with background (digits) or resize (natural images)."""
    h = x.shape[-1]
    if resolution <= 0 or resolution == h:
        return x
    if pad and resolution > h:
        lo = (resolution - h) // 2
        return F.pad(x, (lo, resolution - h - lo, lo, resolution - h - lo))
    y = F.interpolate(x.float(), size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


def _root(cfg: DataConfig) -> Path:
    if not cfg.root:
        raise BenchError(f"dataset {cfg.name} needs a data folder: pass --data-dir DIR or set BENCH_DATA_DIR"
                         " (or --set data.root=DIR)")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise BenchError(f"data folder {root} does not exist; pass --data-dir with an existing folder")
    return root


def load_images(cfg: DataConfig) -> ImageData:
    name = cfg.name
    if name.startswith("folder:"):
        train_x, train_y, test_x, test_y = load_folder(Path(name[len("folder:"):]).expanduser(),
                                                       resolution=cfg.resolution)
        classes = 0 if train_y is None else int(torch.cat([train_y, test_y]).max()) + 1
        return ImageData(name, train_x, train_y, test_x, test_y, hflip=cfg.hflip, classes=classes)
    root = _root(cfg)
    if name in MNIST_FOLDERS or name == "stackedmnist":
        source = "mnist" if name == "stackedmnist" else name
        (tx, ty), (vx, vy) = (load_mnist_family(source, root, train=t, download=cfg.download) for t in (True, False))
        if name == "stackedmnist":
            (tx, ty), (vx, vy) = (stack_digits(tx, ty, cfg.num_train, cfg.seed),
                                  stack_digits(vx, vy, STACKED_TEST_SIZE, cfg.seed + 1))
        native = tx.shape[-1]
        return ImageData(name, resize(tx, cfg.resolution, pad=True), ty, resize(vx, cfg.resolution, pad=True), vy,
                         hflip=cfg.hflip, padded_from=native if cfg.resolution > native else 0,
                         classes=1000 if name == "stackedmnist" else 10)
    if name == "cifar10":
        (tx, ty), (vx, vy) = (load_cifar10(root, train=t, download=cfg.download) for t in (True, False))
        return ImageData(name, resize(tx, cfg.resolution, pad=False), ty, resize(vx, cfg.resolution, pad=False), vy,
                         hflip=cfg.hflip, classes=10)
    raise BenchError(f"no image loader for {name!r}")  # pragma: no cover - names are checked first
