import math
import csv
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from markdown_it import MarkdownIt
from PIL import Image
from scipy import stats as scipy_stats
from torch import nn

from helpers import TinyNet, report_args, write_tiny_inputs
from semiotui.engine import AnalysisSettings, analyse, index_layers
from semiotui.engine.data import ImageSource
from semiotui.engine.reports.write import write_report
from semiotui.engine.saved import open_report
from semiotui.engine.workspace import InputSpec, ModelInfo, Workspace
from semiotui.tui.cli import main

CLASSES = ["a", "b", "c", "d", "e"]


@pytest.fixture
def analysed():
    """A TinyNet workspace over 12 labelled random images, and its analysis (maps kept for 2)."""
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)) for _ in range(12)]
    spec = InputSpec((24, 24), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    images = ImageSource.from_images(pictures, spec, labels=[i % 5 for i in range(12)], class_names=CLASSES,
                                     names=[f"img/{i:02d}.png" for i in range(12)])
    model = TinyNet().eval()
    index = index_layers(model, next(images.batches(1)).images)
    settings = AnalysisSettings(batch_size=5, device="cpu")
    layers = index.select()
    ws = Workspace(model, ModelInfo("tiny.pt", "pickle", "TinyNet", 1637), spec, index, layers, images,
                   settings, class_names=CLASSES)
    result = analyse(model, images.batches(5), ws.layers + ["relu"], settings, keep_maps=2)
    return ws, result


class _Refs(HTMLParser):
    """Collects every URL-bearing attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "data", "poster") and v]


def test_all_four_files_agree_with_each_other_and_with_the_analysis(analysed, tmp_path):
    ws, result = analysed
    out = write_report(tmp_path / "rep", ws, result)
    data = json.loads((out / "report.json").read_text())
    with (out / "entropy.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", *result.layers] == ["image", *(layer["name"] for layer in data["layers"])]
    table = np.array([[float(v or "nan") for v in row[1:]] for row in rows[1:]])
    assert [row[0] for row in rows[1:]] == [img["path"] for img in data["images"]]
    assert np.array_equal(table, result.entropy, equal_nan=True)  # repr() round-trips every float
    # the JSON's statistics are those of the CSV's numbers
    mean = table.mean(axis=0)
    lo, hi = scipy_stats.t.interval(0.95, len(table) - 1, loc=mean, scale=scipy_stats.sem(table, axis=0))
    for j, layer in enumerate(data["layers"]):
        assert layer["entropy"]["mean"] == pytest.approx(mean[j], abs=1e-12)
        assert layer["entropy"]["ci95"] == pytest.approx([lo[j], hi[j]], abs=1e-9)
        if j:
            assert layer["delta"] == pytest.approx(mean[j - 1] - mean[j], abs=1e-12)
    assert data["layers"][0]["delta"] is None
    assert [layer["type"] for layer in data["layers"]][:2] == ["Conv2d", "ReLU"]
    assert data["settings"]["input_size"] == [24, 24] and data["settings"]["method"] == "gradcam"
    assert [img["label"] for img in data["images"]] == [i % 5 for i in range(12)]
    # Markdown and HTML show the same table values
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for layer in data["layers"]:
        shown = f"{layer['entropy']['mean']:.3f}"
        assert f"| `{layer['name']}` |" in md and shown in md  # a code span: relu#2 as written
        assert f"<code>{layer['name']}</code>" in html and shown in html
    for image in (out / "images").glob("*.png"):
        Image.open(image).verify()
    assert len(list((out / "images").glob("image*.png"))) == 2 * (1 + len(result.layers))
    for link in re.findall(r"\]\((images/[^ )]+)", md):
        assert (out / link).is_file(), link
    assert data["files"] == sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def test_html_is_self_contained(analysed, tmp_path):
    ws, result = analysed
    html = (write_report(tmp_path / "rep", ws, result) / "report.html").read_text()
    refs = _Refs()
    refs.feed(html)
    assert refs.urls and all(u.startswith("data:image/png;base64,") for u in refs.urls)
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", html.replace("http://www.w3.org/2000/svg", ""))
    assert "@import" not in html and "url(" not in html
    for title in ("Spatial entropy per layer", "Superization steps", "by class", "Correct against wrong predictions"):
        assert f"{title}</title>" in html  # charts drawn inline, not linked


def test_html_inlines_the_stylesheet_shipped_with_the_package(analysed, tmp_path):
    ws, result = analysed
    html = (write_report(tmp_path / "rep", ws, result) / "report.html").read_text()
    css = resources.files("semiotui.engine.reports").joinpath("report.css").read_text(encoding="utf-8")
    assert "table.maps img{" in css and f"<style>\n{css}</style></head>" in html


def test_an_existing_report_is_replaced_only_when_forced(analysed, tmp_path):
    ws, result = analysed
    target = write_report(tmp_path / "rep", ws, result)
    first = (target / "report.json").read_text()
    with pytest.raises(FileExistsError, match="`force`"):
        write_report(target, ws, result)
    assert (target / "report.json").read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no staging folder or lock left behind
    write_report(target, ws, result, force=True)
    assert (target / "report.json").is_file() and (target / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_force_never_replaces_a_folder_that_is_not_only_a_report(analysed, tmp_path):
    ws, result = analysed
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a semiotui report folder"):
        write_report(mine, ws, result, force=True)
    (mine / "report.json").write_text("[" * 100_000 + "]" * 100_000)  # deeper than Python's JSON reader goes
    with pytest.raises(FileExistsError, match="not a semiotui report folder"):
        write_report(mine, ws, result, force=True)
    report = write_report(tmp_path / "rep", ws, result)
    (report / "images" / "notes.txt").write_text("keep me too")
    with pytest.raises(FileExistsError, match=r"holds images/notes.txt, which semiotui does not write"):
        write_report(report, ws, result, force=True)
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "report.json").is_file()
    assert (report / "images" / "notes.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "rep"]


def test_a_crash_while_writing_leaves_nothing_behind(analysed, tmp_path, monkeypatch):
    ws, result = analysed
    from semiotui.engine.reports import write

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(write, "report_html", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(tmp_path / "rep", ws, result)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_or_missing_parent_is_explained(analysed, tmp_path):
    ws, result = analysed
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "no" / "rep", ws, result)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        write_report(tmp_path / "file" / "rep", ws, result)
    # /proc refuses new folders even to root, where a read-only mode would not
    with pytest.raises(PermissionError, match="cannot write into /proc"):
        write_report("/proc/semiotui-report", ws, result)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_html_renders_to_a_non_blank_page(analysed, tmp_path):
    ws, result = analysed
    page = write_report(tmp_path / "rep", ws, result) / "report.html"
    shot = tmp_path / "shot.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1100,1400", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # text, charts and maps, not a blank page
    assert (pixels < 128).mean() > 0.01


def test_significance_classes_and_outcomes_recomputed_from_the_csv(analysed, tmp_path):
    ws, result = analysed
    out = write_report(tmp_path / "rep", ws, result)
    data = json.loads((out / "report.json").read_text())
    with (out / "entropy.csv").open() as f:
        rows = list(csv.reader(f))[1:]
    h = np.array([[float(v or "nan") for v in row[1:]] for row in rows])
    assert np.isfinite(h).all()  # (no empty map among these: the plain formulas below hold)
    raw = [scipy_stats.wilcoxon(h[:, j - 1] - h[:, j], alternative="greater").pvalue for j in range(1, h.shape[1])]
    m = len(raw)
    order = np.argsort(raw)
    holm = np.empty(m)
    holm[order] = np.minimum(1, np.maximum.accumulate([(m - i) * raw[k] for i, k in enumerate(order)]))
    reported = [layer["p_value"] for layer in data["layers"][1:]]
    assert reported == pytest.approx(holm.tolist(), rel=1e-9)
    medians = np.median(h[:, :-1] - h[:, 1:], axis=0)
    assert [layer["drop"] for layer in data["layers"][1:]] == ((holm < 0.01) & (medians > 0)).tolist()
    assert not any(layer["significant"] for layer in data["layers"])  # no control: no superization
    labels = np.array([img["label"] for img in data["images"]])
    predicted = np.array([img["predicted"] for img in data["images"]])
    for name, group in data["classes"].items():
        members = labels == CLASSES.index(name)
        assert group["count"] == members.sum()
        assert group["curve"] == pytest.approx(h[members].mean(axis=0).tolist(), abs=1e-12)
    right = labels == predicted
    assert data["outcomes"]["correct"]["count"] == right.sum() and data["outcomes"]["wrong"]["count"] == (~right).sum()
    assert data["outcomes"]["wrong"]["curve"] == pytest.approx(h[~right].mean(axis=0).tolist(), abs=1e-12)
    gap = np.abs(h[right].mean(axis=0) - h[~right].mean(axis=0))
    assert data["outcomes"]["parting_layer"] == result.layers[int(np.argmax(gap))]
    steps = np.argmax(h[:, :-1] - h[:, 1:], axis=1) + 1
    assert [img["largest_step"] for img in data["images"]] == [result.layers[k] for k in steps]


def _holm(p):
    p = np.asarray(p, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    out[order] = np.minimum(1, np.maximum.accumulate([(len(ok) - i) * p[k] for i, k in enumerate(order)]))
    return out


def test_the_controlled_verdict_is_recomputed_from_the_two_csv_files(analysed, tmp_path):
    from semiotui.engine.control import ControlSettings, control_analysis

    ws, result = analysed
    result.control = control_analysis(ws.model, ws.images, result, ControlSettings(draws=4, images=10))
    out = write_report(tmp_path / "rep", ws, result)
    data = json.loads((out / "report.json").read_text())
    with (out / "entropy.csv").open() as f:
        h = np.array([[float(v or "nan") for v in row[1:]] for row in list(csv.reader(f))[1:]])
    with (out / "control.csv").open() as f:
        rows = list(csv.reader(f))[1:]
    seeds = sorted({int(row[0]) for row in rows})
    assert seeds == data["control"]["seeds"] == [0, 1, 2, 3] and data["control"]["images"] == 10
    images = data["control"]["rows"]  # the model's numbers are taken on the control's images
    assert [row[1] for row in rows[:10]] == [data["images"][k]["path"] for k in images]
    c = np.array([[[float(v or "nan") for v in row[2:]] for row in rows if int(row[0]) == s] for s in seeds])
    m = h[images]
    names = [layer["name"] for layer in data["layers"]]

    def beyond(value, networks):  # the prediction t-test of one new value against the networks'
        t = (value - networks.mean()) / (networks.std(ddof=1) * np.sqrt(1 + 1 / len(networks)))
        return scipy_stats.t.sf(t, len(networks) - 1)

    spans = [(a, b) for b in range(len(names)) for a in range(b)]  # a plain sequence: every earlier layer
    drop, null = [], []
    for a, b in spans:
        d = m[:, a] - m[:, b]
        drop.append(scipy_stats.wilcoxon(d, alternative="greater", zero_method="zsplit").pvalue)
        null.append(beyond(d.mean(), (c[:, :, a] - c[:, :, b]).mean(axis=1)))
    level = _holm([beyond(-m[:, j].mean(), -c[:, :, j].mean(axis=1)) for j in range(len(names))])
    got = {(names.index(x["start"]), names.index(x["end"])): x for x in data["verdict"]["spans"]}
    assert sorted(got) == sorted(spans) and data["verdict"]["family"] == len(spans)
    for (a, b), p_drop, p_null in zip(spans, _holm(drop), _holm(null)):
        x = got[(a, b)]
        assert x["p_drop"] == pytest.approx(p_drop, rel=1e-9) and x["p_beyond"] == pytest.approx(p_null, rel=1e-9)
        assert x["p_below"] == pytest.approx(level[b], rel=1e-9)
        assert x["claimed"] == (x["drop"] > 0 and max(p_drop, p_null, level[b]) < 0.01)
    steps = [layer["significant"] for layer in data["layers"][1:]]
    assert steps == [got[(j - 1, j)]["claimed"] for j in range(1, len(names))]
    assert "shuffled" in (out / "report.html").read_text() and "No control" not in " ".join(data["summary"])


class HostileNet(nn.Module):
    """Two convs named with HTML and a spreadsheet formula (module names take anything but a dot)."""

    NAMES = ("<img src=x onerror=alert(1)>", '=HYPERLINK("http:evil")')

    def __init__(self) -> None:
        super().__init__()
        self.add_module(self.NAMES[0], nn.Conv2d(3, 4, 3, padding=1))
        self.add_module(self.NAMES[1], nn.Conv2d(4, 4, 3, padding=1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.NAMES:
            x = torch.relu(getattr(self, name)(x))
        return self.head(x)


HOSTILE_IMAGES = ["<script>alert(1)</script>", "[click](javascript:alert(1))", "=1+1", "+2", "-3", "@SUM(A1)",
                  "**bold** _em_ `code` | pipe", "# heading\n<b>new line</b>"]
HOSTILE_CLASSES = ["<b>cat</b>", "[dog](javascript:alert(2))", "=cow"]


@pytest.fixture
def hostile(tmp_path):
    """A report of a model, images and classes whose names are HTML, Markdown and formulas."""
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)) for _ in HOSTILE_IMAGES]
    spec = InputSpec((16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    images = ImageSource.from_images(pictures, spec, labels=[i % 3 for i in range(len(pictures))],
                                     class_names=HOSTILE_CLASSES, names=HOSTILE_IMAGES)
    model = HostileNet().eval()
    index = index_layers(model, next(images.batches(1)).images)
    settings = AnalysisSettings(batch_size=4, device="cpu")
    ws = Workspace(model, ModelInfo("<i>model</i>.pt", "pickle", "HostileNet", 1), spec, index, index.select(),
                   images, settings, class_names=HOSTILE_CLASSES)
    result = analyse(model, images.batches(4), ws.layers, settings, keep_maps=len(pictures))
    result.skipped = [("[x](javascript:alert(3)).png", "not an image")]
    return write_report(tmp_path / "rep", ws, result)


class _Tags(HTMLParser):
    """Every tag of a page with its attributes, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text += data


def test_names_cannot_inject_html_or_links_into_report_md(hostile):
    md = (hostile / "report.md").read_text(encoding="utf-8")
    page = _Tags()
    page.feed(MarkdownIt("commonmark").enable("table").render(md))
    ours = {"h1", "h2", "h3", "p", "strong", "code", "img", "table", "thead", "tbody", "tr", "th", "td", "ul", "li"}
    assert {tag for tag, _ in page.tags} <= ours
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("images/") and (hostile / unquote(attrs["src"])).is_file(), attrs
    for name in [*HOSTILE_IMAGES[:-1], *HOSTILE_CLASSES, *HostileNet.NAMES, "<i>model</i>.pt",
                 "[x](javascript:alert(3)).png", "# heading\ufffd<b>new line</b>"]:
        assert name in page.text, name  # shown as written, in plain text


def test_csv_text_cells_cannot_start_a_spreadsheet_formula(hostile):
    with (hostile / "entropy.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    def shown(name):
        return f"'{name}" if name[0] in "=+-@\t\r" else name
    assert rows[0] == ["image", *map(shown, HostileNet.NAMES)]
    assert [row[0] for row in rows[1:]] == [shown(n.replace("\n", "\ufffd")) for n in HOSTILE_IMAGES]
    assert all(math.isfinite(float(v)) for row in rows[1:] for v in row[1:])  # numbers stay numbers (also -0.2)
    saved = open_report(hostile)  # and the report still opens, with the names as they were
    assert saved.result.layers == list(HostileNet.NAMES)
    assert saved.images.names[2] == "=1+1"


def test_names_not_in_utf8_are_reported_with_replacement_characters(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    bad = Path(os.fsdecode(os.fsencode(folder) + b"/bad\xff.png"))
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(bad, format="PNG")
    Path(os.fsdecode(os.fsencode(folder) + b"/junk\xfe.txt")).write_text("not an image")
    spec = InputSpec((16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    images = ImageSource.from_paths([folder], spec)
    model = TinyNet().eval()
    index = index_layers(model, next(images.batches(1)).images)
    settings = AnalysisSettings(batch_size=4, device="cpu")
    ws = Workspace(model, ModelInfo(os.fsdecode(b"model\xff.pt"), "pickle", "TinyNet", 1), spec, index,
                   index.select(), images, settings)
    result = analyse(model, images.batches(4), ws.layers, settings, keep_maps=1)
    out = write_report(tmp_path / "rep", ws, result)
    for name in ("report.md", "report.html", "entropy.csv", "report.json"):
        text = (out / name).read_text(encoding="utf-8")
        assert "bad\ufffd.png" in text or "bad\\ufffd.png" in text, name
        assert "\\udc" not in text
    data = json.loads((out / "report.json").read_text())
    assert data["model"]["path"] == "model\ufffd.pt" and data["images"][0]["path"] == "imgs/bad\ufffd.png"
    assert data["skipped"][0]["path"].endswith("junk\ufffd.txt")


def test_a_pruned_models_report_carries_its_pruning_log(analysed, tmp_path):
    from semiotui.engine.greedy import Measure, PruneLog, Step

    ws, result = analysed
    original = Measure(1637, 10_000, 0.9, [5.0, 4.0, float("nan"), 3.0])
    step = Step(1, "conv2", 2, 14, True, 1400, 8_000, 0.88, 1.5, [5.0, 3.5, 3.0, 2.0])
    log = PruneLog("semiotic", ["conv1", "conv2"], original, {"tolerance": 0.02}, [step], step, "target reached")
    out = write_report(tmp_path / "rep", ws, result, pruning=log)
    data = json.loads((out / "report.json").read_text())  # a NaN in a curve is written as null
    assert data["pruning"]["steps"][0]["layer"] == "conv2" and data["pruning"]["original"]["curve"][2] is None
    md = (out / "report.md").read_text()
    assert "## Pruning steps" in md and "1,637 → 1,400 parameters, accuracy 90.0% → 88.0%" in md
    assert (out / "images" / "pruning.svg").is_file() and "Entropy before and after pruning" in (out / "report.html").read_text()


@pytest.mark.parametrize("rows", [[0] * 10, list(range(9)) + [10**6], [True] + list(range(1, 10)), "0-9"])
def test_a_saved_report_whose_control_names_other_images_is_refused_in_one_line(analysed, tmp_path, rows):
    from semiotui.engine.control import ControlSettings, control_analysis
    from semiotui.engine.errors import SemiotuiError

    ws, result = analysed
    result.control = control_analysis(ws.model, ws.images, result, ControlSettings(draws=3, images=10))
    out = write_report(tmp_path / "rep", ws, result)
    assert open_report(out).result.control.rows == result.control.rows  # as written, it opens
    data = json.loads((out / "report.json").read_text())
    data["control"]["rows"] = rows
    (out / "report.json").write_text(json.dumps(data))
    with pytest.raises(SemiotuiError) as caught:
        open_report(out)
    assert "\n" not in str(caught.value) and "control" in str(caught.value)


def test_the_report_command_ends_with_the_finding_and_quiet_prints_none_of_it(tmp_path, capsys):
    """The terminal gets the accuracy, the summary's sentences and where the report is; --quiet only warnings."""
    inputs = write_tiny_inputs(tmp_path, images=6, size=16, classes=2)
    assert main(report_args(inputs, tmp_path / "loud")) == 0
    lines = capsys.readouterr().err.splitlines()
    summary = json.loads((tmp_path / "loud" / "report.json").read_text())["summary"]
    assert "semiotui: 6 images; accuracy" in "\n".join(lines)
    assert [f"semiotui: {sentence}" for sentence in summary] == lines[-1 - len(summary):-1]
    assert lines[-1] == f"semiotui: report written to {tmp_path / 'loud'}"
    assert main(report_args(inputs, tmp_path / "quiet", "--quiet")) == 0
    quiet = capsys.readouterr().err.splitlines()
    assert quiet and all(line.startswith("semiotui: warning: ") for line in quiet)  # TinyNet's normalisation
    assert (tmp_path / "quiet" / "report.json").exists()


def test_report_md_reads_as_text_where_nothing_needs_escaping(analysed, tmp_path):
    """Entities and tags stay out of the raw Markdown: "p < 0.01" and "the model's" as written (issue 22)."""
    md = (write_report(tmp_path / "rep", *analysed) / "report.md").read_text()
    assert "p < 0.01" in md and "model's" in md
    assert not re.search(r"&#x27;|&lt;|&gt;|&quot;|<code>", md)


def test_a_control_that_could_not_be_made_is_said_in_the_report_with_why(tmp_path, capsys):
    inputs = write_tiny_inputs(tmp_path, images=6, size=16, classes=2)
    args = [a for a in report_args(inputs, tmp_path / "out", arch="HoldsALock") if a != "--no-control"]
    assert main(args) == 0
    warnings = json.loads((tmp_path / "out" / "report.json").read_text())["warnings"]
    assert any(w.startswith("No control: the model cannot be copied (TypeError") for w in warnings), warnings
    assert "No control: the model cannot be copied" in (tmp_path / "out" / "report.md").read_text()
