"""A small demo workspace for the interface's tests: the bundled model on a few of its images."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

from semiotui.engine.analysis import AnalysisSettings, Batch
from semiotui.engine.control import ControlSettings
from semiotui.engine.data import ImageSource
from semiotui.engine.demo import CLASSES, INPUT_SPEC, demo_samples, load_demo_model
from semiotui.engine.layers import index_layers
from semiotui.engine.workspace import ModelInfo, Workspace


class PacedSource:
    """An image source that waits `pause` seconds before each batch, so a run lasts long enough to act on."""

    def __init__(self, source: ImageSource, pause: float) -> None:
        self.source = source
        self.pause = pause

    def __getattr__(self, name: str) -> object:
        return getattr(self.source, name)

    def __len__(self) -> int:
        return len(self.source)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        for batch in self.source.batches(batch_size):
            time.sleep(self.pause)
            yield batch


def demo_workspace(images: int = 16, *, batch_size: int = 4, pause: float = 0.0,
                   control: ControlSettings | None = None, **settings: object) -> Workspace:
    """The demo model on its first `images` validation images, analysed on the CPU; `pause` s before each batch.

    No control analysis unless asked for (it would add a pass per control network to every test).
    """
    samples = demo_samples("val", images)
    source = ImageSource.from_images(
        [img for img, _ in samples],
        INPUT_SPEC,
        labels=[label for _, label in samples],
        class_names=CLASSES,
        names=[f"{CLASSES[label]}_{i:04d}" for i, (_, label) in enumerate(samples)],
    )
    model = load_demo_model()
    index = index_layers(model, next(source.batches(1)).images)
    return Workspace(
        model=model,
        info=ModelInfo(None, "demo", "DemoNet", sum(p.numel() for p in model.parameters())),
        spec=INPUT_SPEC,
        index=index,
        layers=index.default_selection(),
        images=PacedSource(source, pause) if pause else source,
        settings=replace(AnalysisSettings(), device="cpu", batch_size=batch_size, **settings),
        class_names=list(CLASSES),
        control=control,
    )
