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

Each file is decoded once: listing a folder reads no image, and a file is
checked when it is first read for the analysis. Files that are not readable
images then are skipped: the batch names them (`Batch.skipped`), and so do
the analysis's notices and its result; hidden files (`.DS_Store`) are never
listed, and no file is ever written to. Links to folders are not followed: such
a link, and one that loops, is skipped the same way (named, with why). Images
over PIL's `Image.MAX_IMAGE_PIXELS` (about 89 megapixels) are skipped before
decoding: decoding one takes over 250 MB, and such files are what decompression
bombs look like.
"""

from __future__ import annotations

import errno
import os
import random
import stat
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePath

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
_WORKERS = min(8, os.cpu_count() or 1)
# `_open` refuses images over Image.MAX_IMAGE_PIXELS itself, before decoding; PIL's own warning
# about them (on stderr, under the interface) says nothing more.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning, module="PIL.Image")


class ImageSource:
    """Images with names and labels (-1: unknown), prepared for the model batch by batch.

    Names (and class names) are kept as `readable` shows them: a file name that is
    not UTF-8 can still be shown, and written into a report. `skipped` holds the
    (name, reason) of every file found unreadable so far, in this source and its
    subsets.
    """

    def __init__(
        self,
        read: Callable[[int], Image.Image],
        names: Sequence[str],
        labels: Sequence[int],
        spec: InputSpec,
        *,
        class_names: Sequence[str] | None = None,
        label_source: str | None = None,
        unreadable: dict[str, str] | None = None,
        where: str = "the images",
    ) -> None:
        self._read = read
        self.where = where  # the files or folders given, for messages
        self.names = [readable(name) for name in names]
        self.labels = [int(v) for v in labels]
        self.spec = spec
        self.class_names = [readable(name) for name in class_names] if class_names is not None else None
        # name -> why, shared with subsets: one record, however often the files are read again
        self._unreadable: dict[str, str] = {} if unreadable is None else unreadable
        self.warnings: list[str] = []
        self._example: tuple[int, torch.Tensor] | None = None  # the image `example` read, not decoded again
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
        sorted folder names, as torchvision's ImageFolder does. No file is decoded
        here; `limit` takes the first files (after shuffling), of which unreadable
        ones are skipped when read.
        """
        files, names, folders = _find_files(paths)
        found = sorted({f for f in folders if f is not None})
        if classes is not None and set(found) <= set(classes):
            class_names: list[str] | None = list(classes)
        else:
            class_names = found or None
        labels = [class_names.index(f) if f is not None and class_names else -1 for f in folders]
        order = _order(len(files), limit, shuffle, seed)
        source = cls(
            lambda i: _open(files[order[i]]),
            [names[i] for i in order],
            [labels[i] for i in order],
            spec,
            class_names=class_names,
            label_source=None if not found else ("classes" if class_names == list(classes or []) else "folders"),
            where=", ".join(map(str, paths)),
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
            order = _order(len(files), limit, shuffle, seed)
            return cls(
                lambda i: _open(files[order[i]]),
                [f"imagenet/{split}/{files[i].parent.name}/{files[i].name}" for i in order],
                [ds.samples[i][1] for i in order],
                spec,
                class_names=[c[0] for c in ds.classes],
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
                           label_source=self.label_source, unreadable=self._unreadable, where=self.where)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(name, reason) of every file found not to be a readable image so far, each once."""
        return list(self._unreadable.items())

    def image(self, i: int) -> np.ndarray | None:
        """Image `i` as the model sees it before normalisation: uint8 (H, W, 3) at the input size.

        None for a file that is not a readable image.
        """
        prepared = self._prepared(i)
        if isinstance(prepared, str):
            return None
        pixels = np.asarray(prepared)
        return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels

    def example(self) -> torch.Tensor:
        """The first readable image as a (1, C, H, W) batch, to trace the model with.

        It is kept, so the analysis that follows does not decode it again. Raises
        `InvalidValue` naming the files when none is readable.
        """
        reasons: list[tuple[str, str]] = []
        for i in range(len(self)):  # one at a time: usually the first file is an image
            loaded = self._load(i)
            if isinstance(loaded, torch.Tensor):
                self._example = (i, loaded)
                return self._normalised(loaded[None])
            reasons.append((self.names[i], loaded))
        shown = "; ".join(f"{PurePath(name).name}: {why}" for name, why in reasons[:3])
        more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
        raise InvalidValue(f"no readable image in {self.where}: {len(reasons)} file(s) skipped ({shown}{more}); "
                           "pass image files (PNG, JPEG, ...) or folders of them")

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Normalised (B, C, H, W) float batches with labels, names and positions, in order.

        Files are decoded in a few threads (PIL releases the GIL), the next batch
        while the caller works on this one. A file that is not a readable image is
        left out of its batch and named in the batch's `skipped` (and in `skipped`);
        a batch may then hold no image.
        """
        n = len(self)
        with ThreadPoolExecutor(_WORKERS) as pool:
            ahead: deque[tuple[int, list[Future[torch.Tensor | str]]]] = deque()
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                ahead.append((start, [pool.submit(self._load, i) for i in range(start, stop)]))
                if len(ahead) > 1:  # keep one batch decoding while the caller works on this one
                    yield self._batch(*ahead.popleft())
            while ahead:
                yield self._batch(*ahead.popleft())

    def _batch(self, start: int, futures: list[Future[torch.Tensor | str]]) -> Batch:
        loaded = [(start + k, f.result()) for k, f in enumerate(futures)]
        kept = [(i, x) for i, x in loaded if isinstance(x, torch.Tensor)]
        skipped = [(i, self.names[i], why) for i, why in loaded if isinstance(why, str)]
        self._unreadable.update((name, why) for _, name, why in skipped)
        c, (h, w) = len(self.spec.mean), self.spec.size
        pixels = torch.stack([x for _, x in kept]) if kept else torch.empty(0, c, h, w, dtype=torch.uint8)
        return Batch(
            self._normalised(pixels),
            torch.tensor([self.labels[i] for i, _ in kept], dtype=torch.long),
            [self.names[i] for i, _ in kept],
            indices=[i for i, _ in kept],
            skipped=skipped,
        )

    def _normalised(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) pixels as the model takes them; one vectorised pass for the whole batch."""
        mean = torch.tensor(self.spec.mean).view(-1, 1, 1)
        std = torch.tensor(self.spec.std).view(-1, 1, 1)
        return pixels.float().div_(255.0).sub_(mean).div_(std)

    def _load(self, i: int) -> torch.Tensor | str:
        """Image `i` as uint8 (C, H, W) pixels at the input size, or why it is not a readable image."""
        if self._example is not None and self._example[0] == i:
            return self._example[1]
        prepared = self._prepared(i)
        if isinstance(prepared, str):
            return prepared
        pixels = np.asarray(prepared)
        return torch.from_numpy(pixels.reshape(*pixels.shape[:2], -1).copy()).permute(2, 0, 1)

    def _prepared(self, i: int) -> Image.Image | str:
        """Image `i` scaled and cropped to the input size, or why it is not a readable image.

        The reason is `readable`: a message that quotes a file name not in UTF-8 can be written too.
        """
        try:
            img = to_mode(self._read(i), "RGB" if len(self.spec.mean) == 3 else "L")
        except Image.DecompressionBombError as exc:
            return readable(f"too large: {one_line(exc, short=True)}")
        except NotAFile as exc:
            return str(exc)
        except UnidentifiedImageError:
            return "not an image"
        except (OSError, ValueError, SyntaxError) as exc:  # PIL's decoders report damage in these
            return readable(f"damaged: {one_line(exc, short=True)}")
        return fit(img, self.spec.size)


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


def _find_files(paths: Sequence[str | Path]) -> tuple[list[str], list[str], list[str | None]]:
    """Candidate files, their display names and their class folder (None outside ImageFolder trees).

    Each file once, where it is first named: a file given twice, through a link, or
    inside a folder also given is the same file (the same device and inode). Listing
    reads directories only (strings and `os.scandir`: 20,000 files in 0.1 s, where
    pathlib took 3 s).
    """
    if not paths:
        raise InvalidValue("no image paths given; pass image files or folders")
    files: list[str] = []
    names: list[str] = []
    folders: list[str | None] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise MissingPath(f"{path}: no such file or folder; check the `images` path")
        if path.is_file():
            files.append(str(path))
            names.append(path.name)
            folders.append(None)
            continue
        found = sorted(_visible_files(str(path)))
        if not found:
            raise InvalidValue(f"{path} holds no files; pass a folder of images")
        tree = _is_image_folder(path)
        root, shown = str(path), path.name
        for parts in found:
            if tree and len(parts) == 1:
                continue  # a file beside the class folders (a model, a README) is not part of the tree
            files.append(os.path.join(root, *parts))
            names.append("/".join((shown, *parts)))
            folders.append(parts[0] if tree else None)
    first: dict[tuple[int, int], int] = {}
    keep = [i for i, f in enumerate(files) if first.setdefault(_identity(f), i) == i]
    return [files[i] for i in keep], [names[i] for i in keep], [folders[i] for i in keep]


def _visible_files(root: str, parts: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path parts, below `root`, of every file and link not hidden (no part starts with "."), in any order.

    Links to folders are not followed (as `Path.rglob`): they are listed, as links that
    loop are, so that reading them names them as skipped (`_open`) instead of ending the run.
    """
    with os.scandir(os.path.join(root, *parts)) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from _visible_files(root, (*parts, entry.name))
            elif entry.is_symlink() or entry.is_file(follow_symlinks=False):
                yield (*parts, entry.name)


def _identity(path: str) -> tuple[int, int]:
    """The file `path` names, whatever the links and spellings on the way to it (a link that loops: itself)."""
    try:
        info = os.stat(path)
    except OSError:
        info = os.lstat(path)
    return info.st_dev, info.st_ino


def _is_image_folder(path: Path) -> bool:
    """True for a folder of class subfolders with no image of its own (torchvision's ImageFolder)."""
    extensions = Image.registered_extensions()
    with os.scandir(path) as found:
        entries = [e for e in found if not e.name.startswith(".")]
    # os.path's tests, not DirEntry's: they answer False for a link that loops instead of raising
    return any(os.path.isdir(e.path) for e in entries) and not any(
        os.path.isfile(e.path) and os.path.splitext(e.name)[1].lower() in extensions for e in entries
    )


class NotAFile(OSError):
    """A listed path that is no file to read (a link that loops, leads nowhere or to a folder): the message says
    which, as the reason it is skipped."""


def _open(path: str | Path) -> Image.Image:
    """The first frame of the image in `path`, fully decoded, with the file closed.

    Raises `NotAFile` for a path that is no regular file (nothing else is opened: a FIFO
    would wait forever), and `Image.DecompressionBombError` for an image over
    `Image.MAX_IMAGE_PIXELS` before decoding it (PIL itself only warns below twice that).
    """
    try:
        kind = os.stat(path).st_mode
    except OSError as exc:  # a link that loops or leads nowhere, or a file gone since it was listed
        why = "a link that loops back on itself" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror}"
        raise NotAFile(why) from exc
    if stat.S_ISDIR(kind):
        raise NotAFile("a link to a folder, not followed")
    if not stat.S_ISREG(kind):
        raise NotAFile("not a regular file")
    with Image.open(path) as img:
        limit = Image.MAX_IMAGE_PIXELS
        if limit and img.width * img.height > limit:
            raise Image.DecompressionBombError(
                f"{img.width}x{img.height} is {img.width * img.height} pixels, over the {limit} PIL decodes")
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
