"""engine.data: odd images converted, bad files skipped and named, labels, order, lazy batches, datasets."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import struct
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from semiotui.engine import data
from semiotui.engine.data import ImageSource, fit, to_mode
from semiotui.engine.analysis import AnalysisSettings
from semiotui.engine.workspace import InputSpec

SPEC = InputSpec((16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def read_all(source, batch_size=4):
    """Read every file as an analysis does: the names analysed, and (name, reason) of those skipped."""
    names, skipped = [], []
    for batch in source.batches(batch_size):
        names += batch.names
        skipped += [(name, why) for _, name, why in batch.skipped]
    return names, skipped


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def rgb(h=20, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    wide = np.full((8, 8), 32896, np.uint16)  # 128 * 257
    wide[0, 0] = 65535
    for img in (Image.fromarray(wide), Image.fromarray(wide.astype(np.int32))):
        assert img.mode in ("I;16", "I")
        out = np.asarray(to_mode(img, "RGB"))
        assert out.shape == (8, 8, 3)
        assert out[1, 1].tolist() == [128, 128, 128] and out[0, 0].tolist() == [255, 255, 255]


def test_grey_rgba_palette_and_cmyk_images_become_rgb(tmp_path):
    base = rgb(12, 12)
    grey = Image.fromarray(base[:, :, 0])
    rgba = Image.fromarray(np.dstack([base, np.zeros((12, 12), np.uint8)]), "RGBA")
    palette = Image.fromarray(base).convert("P")
    palette.info["transparency"] = 0
    for img in (grey, rgba, palette, Image.fromarray(base).convert("CMYK")):
        assert to_mode(img, "RGB").mode == "RGB"
    # RGBA keeps its colour under the alpha, as torchvision's loader does
    assert np.array_equal(np.asarray(to_mode(rgba, "RGB")), base)
    assert np.array_equal(np.asarray(to_mode(grey, "RGB"))[:, :, 1], base[:, :, 0])


def test_fit_matches_torchvision_resize_and_center_crop():
    # fit resamples only the crop: the filter weights round differently, by one grey level at most
    for shape in [(30, 47), (3, 200), (200, 3), (1, 57)]:
        img = Image.fromarray(rgb(*shape))
        ours = np.asarray(fit(img, (16, 16))).astype(int)
        theirs = np.asarray(TF.center_crop(TF.resize(img, 16), [16, 16]))
        assert np.abs(ours - theirs).max() <= 1, shape
    img = Image.fromarray(rgb(30, 47))
    assert fit(img, (10, 40)).size == (40, 10)
    same = Image.fromarray(rgb(16, 16))
    assert fit(same, (16, 16)) is same


def test_image_folder_tree_gives_labels_and_odd_files_are_skipped_when_read(tmp_path):
    root = tmp_path / "val"
    save(root / "dog" / "a.png", rgb())
    save(root / "dog" / "deep" / "b.jpg", rgb(seed=1))
    save(root / "cat" / "c.png", rgb(seed=2)[:, :, 0])
    save(root / "cat" / "d.tif", (np.arange(400).reshape(20, 20) * 100).astype(np.uint16))
    (root / "cat" / "notes.txt").write_text("not an image")
    good = (root / "dog" / "a.png").read_bytes()
    (root / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "README.md").write_text("beside the class folders: not part of the tree")
    source = ImageSource.from_paths([root], SPEC)
    assert source.class_names == ["cat", "dog"]
    # listed without decoding: the unreadable files are found when read
    assert source.names == ["val/cat/c.png", "val/cat/d.tif", "val/cat/notes.txt", "val/dog/a.png",
                            "val/dog/cut.png", "val/dog/deep/b.jpg"]
    assert source.labels == [0, 0, 0, 1, 1, 1]
    batches = list(source.batches(4))
    assert [b.names for b in batches] == [["val/cat/c.png", "val/cat/d.tif", "val/dog/a.png"], ["val/dog/deep/b.jpg"]]
    assert [b.indices for b in batches] == [[0, 1, 3], [5]] and batches[0].labels.tolist() == [0, 0, 1]
    assert [(i, n) for b in batches for i, n, _ in b.skipped] == [(2, "val/cat/notes.txt"), (4, "val/dog/cut.png")]
    assert dict(source.skipped)["val/cat/notes.txt"] == "not an image"
    assert dict(source.skipped)["val/dog/cut.png"].startswith("damaged")
    list(source.subset(range(6)).batches(2))  # read again (a new run, a split): each file still named once
    assert [name for name, _ in source.skipped] == ["val/cat/notes.txt", "val/dog/cut.png"]
    assert source.image(2) is None and source.image(0).shape == (16, 16, 3)


def test_folder_names_map_to_the_models_class_order(tmp_path):
    save(tmp_path / "imgs" / "square" / "1.png", rgb())
    save(tmp_path / "imgs" / "circle" / "2.png", rgb(seed=1))
    source = ImageSource.from_paths([tmp_path / "imgs"], SPEC, classes=["square", "circle", "star"])
    assert source.names == ["imgs/circle/2.png", "imgs/square/1.png"] and source.labels == [1, 0]
    other = ImageSource.from_paths([tmp_path / "imgs"], SPEC, classes=["cat", "dog"])
    assert other.class_names == ["circle", "square"] and other.labels == [0, 1]
    assert "not the model's class names" in other.warnings[-1]


def test_plain_files_and_folders_have_unknown_labels(tmp_path):
    a = save(tmp_path / "a.png", rgb())
    save(tmp_path / "more" / "b.png", rgb(seed=1))
    source = ImageSource.from_paths([a, tmp_path / "more"], SPEC)
    assert source.labels == [-1, -1] and source.class_names is None
    assert source.names == ["a.png", "more/b.png"]


def test_nothing_readable_is_an_error_naming_what_was_found(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    (tmp_path / "y.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match=r"no readable image in .*2 file\(s\) skipped.*x.txt: not an image"):
        ImageSource.from_paths([tmp_path], SPEC).example()
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        ImageSource.from_paths([tmp_path / "nope"], SPEC)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        ImageSource.from_paths([tmp_path / "empty"], SPEC)


def test_images_over_the_pixel_limit_are_skipped_with_the_reason(tmp_path, monkeypatch):
    save(tmp_path / "small.png", rgb(8, 8))
    save(tmp_path / "huge.png", rgb(40, 40))
    save(tmp_path / "bomb.png", rgb(40, 80))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: PIL warns; 3200: PIL refuses
    opened = []
    monkeypatch.setattr(Image.Image, "load", lambda self, _load=Image.Image.load: opened.append(self.size) or _load(self))
    names, skipped = read_all(ImageSource.from_paths([tmp_path], SPEC))
    assert names == [f"{tmp_path.name}/small.png"]
    assert [p.rsplit("/", 1)[1] for p, _ in skipped] == ["bomb.png", "huge.png"]
    assert all(reason.startswith("too large") for _, reason in skipped)
    assert (40, 40) not in opened and (80, 40) not in opened  # refused before decoding


@contextmanager
def address_space_capped(extra: int):
    """This process may map at most `extra` more bytes than it does now (Linux: RLIMIT_AS)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.skipif(sys.platform != "linux", reason="caps the address space through /proc and RLIMIT_AS")
def test_a_very_wide_or_tall_image_is_prepared_within_the_memory_of_its_input_size(tmp_path):
    # 20000x1 covering 224x224 scales to 4.48M x 224 (3 GB) before a centre crop keeps 224 x 224 of it
    spec = InputSpec((224, 224), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    wide = save(tmp_path / "wide.png", np.full((1, 20000, 3), 90, np.uint8))
    tall = save(tmp_path / "tall.png", np.full((20000, 1, 3), 90, np.uint8))
    assert wide.stat().st_size < 1000
    source = ImageSource.from_paths([wide, tall], spec)
    with address_space_capped(256 << 20):
        pictures = [source.image(0), source.image(1)]
        batch = next(source.batches(2)).images
    assert all(p.shape == (224, 224, 3) and (p == 90).all() for p in pictures)
    assert batch.shape == (2, 3, 224, 224)


def test_names_not_in_utf8_or_with_control_characters_are_shown_with_replacement_characters(tmp_path):
    root = os.fsencode(tmp_path / "val")
    bad = Path(os.fsdecode(root + b"/c\xfe/bad\xff.png"))  # as Python names bytes invalid in UTF-8
    save(bad, rgb())
    save(tmp_path / "val" / "ok" / "tab\there.png", rgb(seed=1))
    Path(os.fsdecode(root + b"/ok/junk\xfe.txt")).write_text("not an image")
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    source = ImageSource.from_paths([tmp_path / "val"], SPEC)
    names, skipped = read_all(source)
    assert names == ["val/c\ufffd/bad\ufffd.png", "val/ok/tab\ufffdhere.png"]
    assert source.class_names == ["c\ufffd", "ok"]
    assert skipped == [("val/ok/junk\ufffd.txt", "not an image")] == source.skipped
    for text in [*source.names, *source.class_names, *(name for name, _ in skipped)]:
        text.encode("utf-8")  # no surrogate left to fail a write
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == digest


def test_limit_shuffle_and_seed(tmp_path):
    for i in range(6):
        save(tmp_path / f"{i}.png", rgb(seed=i))
    (tmp_path / "0_bad.png").write_text("nope")
    first = ImageSource.from_paths([tmp_path], SPEC, limit=3)
    # the limit takes files, unread: the bad one among them is skipped when read
    assert [n.rsplit("/", 1)[1] for n in first.names] == ["0.png", "0_bad.png", "1.png"]
    assert [n.rsplit("/", 1)[1] for n in read_all(first)[0]] == ["0.png", "1.png"]
    a = ImageSource.from_paths([tmp_path], SPEC, shuffle=True, seed=5)
    b = ImageSource.from_paths([tmp_path], SPEC, shuffle=True, seed=5)
    c = ImageSource.from_paths([tmp_path], SPEC, shuffle=True, seed=6)
    assert a.names == b.names != c.names
    assert sorted(a.names) == sorted(ImageSource.from_paths([tmp_path], SPEC).names)
    with pytest.raises(ValueError, match="`limit` must be at least 1"):
        ImageSource.from_paths([tmp_path], SPEC, limit=0)


def test_files_decoded_in_parallel_keep_their_order_and_positions(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_WORKERS", 4)
    for i in range(60):
        if i % 7 == 3:
            (tmp_path / f"{i:02d}.png").write_text("nope")
        else:
            save(tmp_path / f"{i:02d}.png", rgb(4, 4, seed=i))
    source = ImageSource.from_paths([tmp_path], SPEC, limit=40)
    batches = list(source.batches(16))
    assert [len(b.names) + len(b.skipped) for b in batches] == [16, 16, 8]
    assert [n.rsplit("/", 1)[1] for b in batches for n in b.names] == [f"{i:02d}.png" for i in range(40) if i % 7 != 3]
    assert [i for b in batches for i in b.indices] == [i for i in range(40) if i % 7 != 3]
    assert [i for b in batches for i, _, _ in b.skipped] == [3, 10, 17, 24, 31, 38]
    assert [n.rsplit("/", 1)[1] for n, _ in source.skipped] == ["03.png", "10.png", "17.png", "24.png", "31.png", "38.png"]


def test_each_file_is_decoded_once_from_opening_to_the_end_of_the_analysis(tmp_path, monkeypatch):
    from semiotui.engine import analyse
    from semiotui.engine.opening import open_workspace

    for i in range(10):
        save(tmp_path / "imgs" / f"{i}.png", rgb(64, 64, seed=i))
    (tmp_path / "imgs" / "5_bad.png").write_text("nope")
    decoded = []
    monkeypatch.setattr(data, "_open", lambda path, _open=data._open: decoded.append(os.path.basename(path)) or _open(path))
    workspace = open_workspace(images=[str(tmp_path / "imgs")], settings=AnalysisSettings(batch_size=4, device="cpu"))
    assert decoded == ["0.png"]  # the example the layers are traced with, kept for the analysis
    result = analyse(workspace.model, workspace.images.batches(4), workspace.layers, workspace.settings)
    assert sorted(decoded) == sorted(f.name for f in (tmp_path / "imgs").iterdir())  # every file once
    assert len(result.images) == 10 and result.skipped == [("imgs/5_bad.png", "not an image")]


def test_batches_are_normalised_at_the_spec_size_with_labels_and_names(tmp_path):
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[..., 0] = 255
    images = [Image.fromarray(colour), Image.fromarray(rgb(40, 30))]
    source = ImageSource.from_images(images, SPEC, labels=[2, 0], class_names=["a", "b", "c"], names=["red", "x"])
    batches = list(source.batches(1))
    assert [b.names for b in batches] == [["red"], ["x"]]
    assert [b.labels.tolist() for b in batches] == [[2], [0]]
    red = batches[0].images[0]
    assert red.shape == (3, 16, 16) and red.dtype == torch.float32
    assert torch.allclose(red[0], torch.full((16, 16), 2.0)) and torch.allclose(red[1], torch.full((16, 16), -2.0))
    shown = source.image(1)
    assert shown.shape == (16, 16, 3) and shown.dtype == np.uint8
    expected = (torch.tensor(shown).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(batches[1].images[0], expected)


def test_one_mean_value_gives_grey_input():
    source = ImageSource.from_images([Image.fromarray(rgb())], InputSpec((16, 16), (0.5,), (0.5,)))
    assert next(source.batches(4)).images.shape == (1, 1, 16, 16)
    assert source.image(0).shape == (16, 16, 3)


class CountingImages(list):
    """A list of images that counts how many were read."""

    reads = 0

    def __getitem__(self, i):
        CountingImages.reads += 1
        return super().__getitem__(i)


def test_images_are_read_lazily_batch_by_batch():
    CountingImages.reads = 0
    images = CountingImages(Image.fromarray(rgb(seed=i)) for i in range(40))
    source = ImageSource.from_images(images, SPEC)
    assert CountingImages.reads == 0
    batches = source.batches(4)
    first = next(batches)
    assert first.images.shape == (4, 3, 16, 16)
    assert CountingImages.reads <= 8  # this batch and the one decoding ahead
    assert sum(len(b.images) for b in batches) == 36
    batches.close()


def write_idx(path, array):
    """An MNIST idx file, as torchvision leaves it in MNIST/raw after its download."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_on_disk_is_read_without_downloading(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(5))
    source = ImageSource.from_dataset(f"mnist:{tmp_path}", InputSpec((28, 28), (0.5,), (0.5,)), limit=4)
    assert len(source) == 4 and source.labels == [0, 1, 2, 3]
    assert source.names[0] == "mnist/test/00000" and source.class_names[3].startswith("3")
    batch = next(source.batches(4))
    assert torch.allclose(batch.images[2, 0], (torch.from_numpy(images[2]).float() / 255 - 0.5) / 0.5)


def test_missing_datasets_are_never_downloaded(tmp_path):
    with pytest.raises(ValueError, match="cifar10 is not in .*never downloads.*CIFAR10"):
        ImageSource.from_dataset(f"cifar10:{tmp_path}", SPEC)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="NAME:ROOT"):
        ImageSource.from_dataset(f"svhn:{tmp_path}", SPEC)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ImageSource.from_dataset(f"mnist:{tmp_path / 'nope'}", SPEC)
    with pytest.raises(ValueError, match="splits train and test"):
        ImageSource.from_dataset(f"mnist:{tmp_path}:val", SPEC)


def test_unreadable_files_are_named_once_early_and_once_at_the_end_and_the_rest_keep_their_places(tmp_path):
    from semiotui.engine.analysis import BatchDone, Finished, Notice, stream_analysis
    from semiotui.engine.opening import open_workspace

    for i in range(10):
        save(tmp_path / "imgs" / f"{i}.png", rgb(64, 64, seed=i))
    for bad in ("1_bad.png", "6_bad.png", "8_bad.png"):  # in the first and the third batch of 4 files
        (tmp_path / "imgs" / bad).write_text("nope")
    workspace = open_workspace(images=[str(tmp_path / "imgs")], settings=AnalysisSettings(batch_size=4, device="cpu"))
    assert len(workspace.images) == 13
    events = list(stream_analysis(workspace.model, workspace.images.batches(4), workspace.layers, workspace.settings,
                                  total=len(workspace.images), keep_maps=[2, 3, 12]))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert notices == ["skipped 1 file(s) that are not readable images: imgs/1_bad.png (not an image)",
                       "skipped 2 more file(s) that are not readable images: imgs/6_bad.png (not an image), "
                       "imgs/8_bad.png (not an image)"]
    assert [e.total for e in events if isinstance(e, BatchDone)][-1] == 10  # the bar ends full
    result = events[-1].result
    assert isinstance(events[-1], Finished) and result.partial is None and len(result.images) == 10
    assert all(workspace.images.names[r.index] == r.name for r in result.images)  # positions in the source
    assert [r.name for r in result.images if r.maps is not None] == ["imgs/2.png", "imgs/9.png"]  # 2: 1_bad.png
