"""Files and folders are written whole: renamed into place at the end, nothing left behind by a failure."""

from __future__ import annotations

import pytest

from semiotui.engine.atomic import staged
from semiotui.engine.saved import SavedImages
from semiotui.engine.workspace import ImageSet
from semiotui.engine.demo import demo_images


def test_a_file_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with staged(target) as path:
            path.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    with staged(target) as path:
        path.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_folder_is_built_beside_its_destination_and_renamed(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged(target, folder=True, tag="partial") as path:
            assert path.name.startswith(".out.partial-") and path.is_dir()
            (path / "a").write_text("a")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with staged(target, folder=True) as path:
        (path / "a").write_text("a")
    assert [p.name for p in target.iterdir()] == ["a"] and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_image_sources_and_saved_reports_are_image_sets():
    images = demo_images("val", 4)
    saved = SavedImages(images.names, images.labels, images.class_names, [], {1: images.image(1)})
    assert isinstance(images, ImageSet) and isinstance(saved, ImageSet)
    part = saved.subset([3, 1])
    assert part.names == [images.names[3], images.names[1]] and part.image(0) is None
    assert (part.image(1) == images.image(1)).all()
