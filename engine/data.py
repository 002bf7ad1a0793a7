"""Images for the analysis: files, folders, ImageFolder trees, datasets on disk, or images in memory.

An `ImageSource` reads its images lazily, one batch at a time (decoded in a few
threads, the next batch while the current one is analysed), so thousands of
images never sit in memory as tensors. Preparation follows torchvision's
evaluation transforms: the image is scaled so that it covers the input size
(for a square input, the shorter side becomes the input side; **choice**: no
extra margin, unlike the 256→224 of ImageNet evaluation) with bilinear,
antialiased resampling, centre-cropped, and normalised with the spec's mean
and std. The spec's number of mean values (3 or 1) sets colour or grey input.
**Choice**: the crop is taken before the scaling, so only the pixels kept are
resampled (within one grey level of scaling the whole image): an image of any
aspect ratio costs the memory of the input size, where scaling a 20000×1 image
to cover 224×224 first would take 3 GB.

Odd images are converted, not refused: grey, palette and CMYK become RGB as
PIL converts them; RGBA drops its alpha, as torchvision's image loader does,
so the model sees what it saw in training; 16-bit grey (`I;16`, and `I`,
taken to hold 16-bit values) is scaled by 1/257 rather than clipped at 255.
Images over PIL's `Image.MAX_IMAGE_PIXELS` (about 89 megapixels) are skipped:
decoding one takes over 250 MB, and such files are what decompression bombs
look like. Files that are not readable images (including hidden ones such as
`.DS_Store`, which are never listed) are skipped too; every skipped file is
named in one warning and kept in `skipped`, and none is ever written to.
"""

from __future__ import annotations

import os
import random
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .analysis import Batch
from .errors import InvalidValue, MissingPath, one_line
from .names import readable
from .workspace import InputSpec

DATASETS = ("cifar10", "cifar100", "mnist", "imagenet")
SPLITS = ("train", "test", "val")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_NAMED_IN_WARNING = 20  # skipped files named in the warning; `skipped` keeps them all
_WORKERS = min(8, os.cpu_count() or 1)


class ImageSource:
    """Images with names and labels (-1: unknown), prepared for the model batch by batch.

    Names (and class names, and skipped paths) are kept as `readable` shows them:
    a file name that is not UTF-8 can still be shown, and written into a report.
    """

    def __init__(
        self,
        read: Callable[[int], Image.Image],
        names: Sequence[str],
        labels: Sequence[int],
        spec: InputSpec,
        *,
        class_names: Sequence[str] | None = None,
        skipped: Sequence[tuple[str, str]] = (),
        label_source: str | None = None,
    ) -> None:
        self._read = read
        self.names = [readable(name) for name in names]
        self.labels = [int(v) for v in labels]
        self.spec = spec
        self.class_names = [readable(name) for name in class_names] if class_names is not None else None
        self.skipped = [(readable(path), readable(reason)) for path, reason in skipped]
        self.warnings = [_skipped_warning(self.skipped)] if self.skipped else []
        # Where the labels come from: "folders" (sorted folder names, whose order the model may not share),
        # "classes" (folder names found among the model's class names), "dataset", or None (given).
        self.label_source = label_source

    @classmethod
    def from_paths(
        cls,
        paths: Sequence[str | Path],
        spec: InputSpec,
        *,
        classes: Sequence[str] | None = None,
        limit: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
    ) -> ImageSource:
        """Image files and folders (recursive); ImageFolder trees give labels.

        A folder whose subfolders hold the images and that has no image of its own
        is an ImageFolder tree: each subfolder is a class, and files beside them are
        ignored. Labels index `classes`
        (the model's class names) when every folder name is one of them, else the
        sorted folder names, as torchvision's ImageFolder does.
        """
        files, names, folders = _find_files(paths)
        found = sorted({f for f in folders if f is not None})
        if classes is not None and set(found) <= set(classes):
            class_names: list[str] | None = list(classes)
        else:
            class_names = found or None
        labels = [class_names.index(f) if f is not None and class_names else -1 for f in folders]
        kept, skipped = _readable(files, _order(len(files), None, shuffle, seed), limit)
        if not kept:
            shown = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:3])
            more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
            raise InvalidValue(
                f"no readable image in {', '.join(map(str, paths))}: {len(skipped)} file(s) skipped "
                f"({shown}{more}); pass image files (PNG, JPEG, ...) or folders of them"
            )
        source = cls(
            lambda i: _open(files[kept[i]]),
            [names[i] for i in kept],
            [labels[i] for i in kept],
            spec,
            class_names=class_names,
            skipped=skipped,
            label_source=None if not found else ("classes" if class_names == list(classes or []) else "folders"),
        )
        if classes is not None and found and class_names != list(classes):
            source.warnings.append(
                f"folder names ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}) are not the "
                "model's class names; labels follow the sorted folder names"
            )
        return source

    @classmethod
    def from_dataset(
        cls, dataset: str, spec: InputSpec, *, limit: int | None = None, shuffle: bool = False, seed: int = 0
    ) -> ImageSource:
        """A torchvision dataset already on disk, `NAME:ROOT[:SPLIT]`; never downloaded.

        NAME is cifar10, cifar100, mnist or imagenet; SPLIT defaults to test (val for imagenet).
        """
        name, root, split = dataset_parts(dataset)
        if name not in DATASETS or not root:
            raise InvalidValue(
                f"`dataset` {dataset}: expected NAME:ROOT[:SPLIT] with NAME one of {', '.join(DATASETS)}, "
                "e.g. cifar10:/data/cifar"
            )
        split = split or ("val" if name == "imagenet" else "test")
        ds = _torchvision_dataset(name, root, split)
        if name == "imagenet":
            files = [Path(f) for f, _ in ds.samples]
            kept, skipped = _readable(files, _order(len(files), None, shuffle, seed), limit)
            return cls(
                lambda i: _open(files[kept[i]]),
                [f"imagenet/{split}/{files[i].parent.name}/{files[i].name}" for i in kept],
                [ds.samples[i][1] for i in kept],
                spec,
                class_names=[c[0] for c in ds.classes],
                skipped=skipped,
                label_source="dataset",
            )
        order = _order(len(ds.data), limit, shuffle, seed)
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else ds.data
        return cls(
            lambda i: Image.fromarray(data[order[i]]),
            [f"{name}/{split}/{i:05d}" for i in order],
            [int(ds.targets[i]) for i in order],
            spec,
            class_names=list(ds.classes),
            label_source="dataset",
        )

    @classmethod
    def from_images(
        cls,
        images: Sequence[Image.Image],
        spec: InputSpec,
        *,
        labels: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        limit: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
    ) -> ImageSource:
        """PIL images already in memory (the bundled demo's), with optional labels and names."""
        order = _order(len(images), limit, shuffle, seed)
        return cls(
            lambda i: images[order[i]],
            [names[i] if names is not None else f"#{i}" for i in order],
            [labels[i] if labels is not None else -1 for i in order],
            spec,
            class_names=class_names,
        )

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: Sequence[int]) -> ImageSource:
        """The images at `indices`, in that order: a split, or a few images to draw again."""
        picked = list(indices)
        return ImageSource(lambda i: self._read(picked[i]), [self.names[i] for i in picked],
                           [self.labels[i] for i in picked], self.spec, class_names=self.class_names,
                           label_source=self.label_source)

    def image(self, i: int) -> np.ndarray:
        """Image `i` as the model sees it before normalisation: uint8 (H, W, 3) at the input size."""
        pixels = np.asarray(self._prepared(i))
        return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Normalised (B, C, H, W) float batches with labels and names, in order."""
        n = len(self)
        with ThreadPoolExecutor(_WORKERS) as pool:
            ahead: deque[tuple[int, list[Future[torch.Tensor]]]] = deque()
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                ahead.append((start, [pool.submit(self._tensor, i) for i in range(start, stop)]))
                if len(ahead) > 1:  # keep one batch decoding while the caller works on this one
                    yield self._batch(*ahead.popleft())
            while ahead:
                yield self._batch(*ahead.popleft())

    def _batch(self, start: int, futures: list[Future[torch.Tensor]]) -> Batch:
        stop = start + len(futures)
        return Batch(
            torch.stack([f.result() for f in futures]),
            torch.tensor(self.labels[start:stop], dtype=torch.long),
            self.names[start:stop],
        )

    def _tensor(self, i: int) -> torch.Tensor:
        pixels = np.asarray(self._prepared(i), dtype=np.float32) / 255.0
        x = torch.from_numpy(pixels.reshape(*pixels.shape[:2], -1)).permute(2, 0, 1)
        mean = torch.tensor(self.spec.mean).view(-1, 1, 1)
        std = torch.tensor(self.spec.std).view(-1, 1, 1)
        return (x - mean) / std

    def _prepared(self, i: int) -> Image.Image:
        try:
            img = self._read(i)
        except (OSError, ValueError) as exc:  # a file changed or vanished since it was checked
            raise InvalidValue(f"{self.names[i]} can no longer be read ({one_line(exc, short=True)})") from exc
        return fit(to_mode(img, "RGB" if len(self.spec.mean) == 3 else "L"), self.spec.size)


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """`img` as 'RGB' or 'L', scaling 16-bit grey to 8 bits instead of clipping it."""
    if img.mode in _SIXTEEN_BIT:
        wide = np.asarray(img).astype(np.float32)
        img = Image.fromarray(np.clip(wide / 257.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # what PIL asks for before a palette with transparency becomes RGB
    return img if img.mode == mode else img.convert(mode)


def fit(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale `img` to cover `size` (H, W) and centre-crop it, as torchvision's Resize + CenterCrop.

    Only the crop is resampled: PIL's `box` is the crop's region of the source
    (its filter still reaches past the box edge, as a full resize would), so a
    20000x1 image costs the input size, not the 4.48M x 224 its full scaling takes.
    """
    h, w = size
    if img.size == (w, h):
        return img
    scale = max(h / img.height, w / img.width)
    nw, nh = max(w, int(img.width * scale)), max(h, int(img.height * scale))
    left, top = int(round((nw - w) / 2.0)), int(round((nh - h) / 2.0))
    sx, sy = img.width / nw, img.height / nh  # source pixels per scaled pixel
    box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
    return img.resize((w, h), Image.Resampling.BILINEAR, box=box)


def _find_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[str], list[str | None]]:
    """Candidate files, their display names and their class folder (None outside ImageFolder trees).

    Each file once, where it is first named: a file given twice, through a link, or
    inside a folder also given is the same file (by resolved path).
    """
    if not paths:
        raise InvalidValue("no image paths given; pass image files or folders")
    files: list[Path] = []
    names: list[str] = []
    folders: list[str | None] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise MissingPath(f"{path}: no such file or folder; check the `images` path")
        if path.is_file():
            files.append(path)
            names.append(path.name)
            folders.append(None)
            continue
        found = sorted(
            f for f in path.rglob("*")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts)
        )
        if not found:
            raise InvalidValue(f"{path} holds no files; pass a folder of images")
        tree = _is_image_folder(path)
        for f in found:
            rel = f.relative_to(path)
            if tree and len(rel.parts) == 1:
                continue  # a file beside the class folders (a model, a README) is not part of the tree
            files.append(f)
            names.append(str(Path(path.name) / rel))
            folders.append(rel.parts[0] if tree else None)
    first: dict[Path, int] = {}
    keep = [i for i, f in enumerate(files) if first.setdefault(f.resolve(), i) == i]
    return [files[i] for i in keep], [names[i] for i in keep], [folders[i] for i in keep]


def _is_image_folder(path: Path) -> bool:
    """True for a folder of class subfolders with no image of its own (torchvision's ImageFolder)."""
    extensions = Image.registered_extensions()
    entries = [e for e in path.iterdir() if not e.name.startswith(".")]
    return any(e.is_dir() for e in entries) and not any(
        e.is_file() and e.suffix.lower() in extensions for e in entries
    )


Reasons = list[str | None]  # why each file is unusable; None for a usable image
Share = Callable[[Callable[[list[Path]], Reasons], list[Path]], Reasons]
# Under torchrun: has each rank check its block of the files with the given function
# and returns every rank's reasons in order (engine.distributed.shared_file_checks).
_SHARED_CHECK: ContextVar[Share | None] = ContextVar("shared_file_check", default=None)


@contextmanager
def sharing_file_checks(share: Share) -> Iterator[None]:
    """Within it, sources check all their files through `share(check, files)` (when no limit cuts the check short)."""
    token = _SHARED_CHECK.set(share)
    try:
        yield
    finally:
        _SHARED_CHECK.reset(token)


def _readable(
    files: Sequence[Path], order: Sequence[int], limit: int | None
) -> tuple[list[int], list[tuple[str, str]]]:
    """The first `limit` readable files in `order`, and (path, reason) for the unreadable ones met.

    Files are decoded in parallel (PIL releases the GIL while decoding), a few
    per worker at a time, and taken in order, so the result is the serial one.
    """
    limit = _checked_limit(limit)
    share = _SHARED_CHECK.get()
    if limit is None and share is not None:
        ordered = [files[i] for i in order]
        checked: Iterator[tuple[int, str | None]] = zip(order, share(_reasons, ordered))
    else:
        checked = _checked_in_order(files, order)
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    for i, reason in checked:
        if limit is not None and len(kept) >= limit:
            break
        if reason is None:
            kept.append(i)
        else:
            skipped.append((str(files[i]), reason))
    return kept, skipped


def _checked_in_order(files: Sequence[Path], order: Sequence[int]) -> Iterator[tuple[int, str | None]]:
    """(index, reason) for the files in `order`, checked a chunk at a time, so a limit stops it early."""
    chunk = 4 * _WORKERS
    with _decoding() as pool:
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            yield from zip(part, pool.map(_unreadable, [files[i] for i in part]))


def _reasons(paths: list[Path]) -> Reasons:
    """Why each file is unusable (None where it is an image), decoded in parallel."""
    with _decoding() as pool:
        return list(pool.map(_unreadable, paths))


@contextmanager
def _decoding() -> Iterator[ThreadPoolExecutor]:
    """Threads to decode files in, with oversized images counted as errors."""
    # One filter for all the workers: catch_warnings is not thread-safe, so no worker sets its own.
    with warnings.catch_warnings(), ThreadPoolExecutor(_WORKERS) as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield pool


def _unreadable(path: Path) -> str | None:
    """Why `path` is not a usable image (decoding it fully), or None when it is one.

    Oversized images count as too large only where the caller turned PIL's
    DecompressionBombWarning into an error (`_decoding` does).
    """
    try:
        to_mode(_open(path), "RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return f"too large: {one_line(exc, short=True)}"
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's decoders report damage in these
        return f"damaged: {one_line(exc, short=True)}"
    return None


def _open(path: Path) -> Image.Image:
    """The first frame of the image in `path`, fully decoded, with the file closed."""
    with Image.open(path) as img:
        img.load()  # the pixels stay in memory after the file is closed
        return img


def _order(n: int, limit: int | None, shuffle: bool, seed: int) -> list[int]:
    """Indices 0..n-1, shuffled by `seed` if asked, at most `limit` of them."""
    order = list(range(n))
    if shuffle:
        random.Random(seed).shuffle(order)
    return order[: _checked_limit(limit)]


def _checked_limit(limit: int | None) -> int | None:
    if limit is not None and limit < 1:
        raise InvalidValue(f"`limit` must be at least 1, got {limit}")
    return limit


def dataset_parts(dataset: str) -> tuple[str, str, str | None]:
    """NAME, ROOT and SPLIT (None when not given) of a `NAME:ROOT[:SPLIT]` dataset argument."""
    name, _, root = dataset.partition(":")
    head, _, tail = root.rpartition(":")
    if head and tail in SPLITS:
        return name, head, tail
    return name, root, None


def _torchvision_dataset(name: str, root: str, split: str) -> object:
    """The torchvision dataset `name` from `root`, or a message saying what is missing there."""
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST, "imagenet": tvd.ImageNet}[name]
    if name == "imagenet":
        if split == "test":
            raise InvalidValue("`dataset` imagenet has the splits train and val")
        kwargs: dict[str, object] = {"split": split}
    else:
        if split == "val":
            raise InvalidValue(f"`dataset` {name} has the splits train and test")
        kwargs = {"train": split == "train", "download": False}
    if not Path(root).is_dir():
        raise MissingPath(f"`dataset` {name}:{root}: no such folder")
    try:
        return cls(root, **kwargs)
    except (RuntimeError, OSError) as exc:
        fetch = (
            "put the devkit archive and the split folder there, as torchvision.datasets.ImageNet expects "
            "(or pass the folder of class subfolders as `images`)"
            if name == "imagenet"
            else f"fetch it once with torchvision.datasets.{cls.__name__}({root!r}, download=True)"
        )
        raise InvalidValue(f"{name} is not in {root} ({one_line(exc, short=True)}); "
                           f"semiotui never downloads: {fetch}") from exc


def _skipped_warning(skipped: Sequence[tuple[str, str]]) -> str:
    shown = ", ".join(f"{p} ({r})" for p, r in skipped[:_NAMED_IN_WARNING])
    more = f", and {len(skipped) - _NAMED_IN_WARNING} more" if len(skipped) > _NAMED_IN_WARNING else ""
    return f"skipped {len(skipped)} file(s) that are not readable images: {shown}{more}"
