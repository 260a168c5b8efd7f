"""Stimulus import (all or nothing, clear messages) and export (native-size PNGs + manifest), on both backends."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import cli
from app.errors import ConfigError
from app.models import Stimulus
from app.stimuli.images import decode_png
from app.stimuli.service import export_stimuli, import_stimuli
from app.studies.service import create_study, get_study

RNG = np.random.default_rng(7)
# Checks that happen before anything is written run on SQLite only (the suite shares two cores).
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
HEADER = ["condition", "image_index", "label", "path"]


def grey(h: int = 28, w: int = 28) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w), dtype=np.uint8)


def png_bytes(pixels: np.ndarray, *, with_text: bool = False, fmt: str = "PNG") -> bytes:
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    if with_text:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "condition=CAP true_label=3")
        info.add_itxt("Description", "secret l2=0.41", lang="en")
        img.save(buf, format="PNG", pnginfo=info)
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def write_pool(directory: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cols = header or list(dict.fromkeys(k for r in rows for k in r))
    with (directory / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return directory


def benign(i: int) -> np.ndarray:
    """The CB image of image_index i (the same in every call, so CB and CAP rows of one index match)."""
    return np.random.default_rng(1000 + i).integers(0, 256, size=(28, 28), dtype=np.uint8)


def adversarial(i: int, n_pixels: int = 5) -> np.ndarray:
    """A CAI/CAP image of image_index i inside the L0 budget: ``n_pixels`` pixels of its CB image inverted."""
    px = benign(i).copy()
    px.flat[: n_pixels * 7 : 7] = 255 - px.flat[: n_pixels * 7 : 7]
    return px


def good_rows(directory: Path, n: int = 2, condition: str = "CB", start: int = 0) -> list[dict[str, str]]:
    rows = []
    (directory / "img").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        name = f"img/{condition}_{i}.png"
        (directory / name).write_bytes(png_bytes(benign(i) if condition == "CB" else adversarial(i)))
        rows.append({"condition": condition, "image_index": str(i), "label": str(i % 10), "path": name})
    return rows


def n_stimuli(db) -> int:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Stimulus)) or 0


@pytest.fixture
def study(db, toml_for) -> str:  # type: ignore[no-untyped-def]
    """A draft MNIST study with conditions CB and CAP (not CAI)."""
    with db.session() as s:
        create_study(s, toml_for(slug="pool-study", trials=2, conditions=("CB", "CAP")))
    return "pool-study"


def run_import(db, slug: str, directory: Path) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return import_stimuli(s, get_study(s, slug), directory)


# --- a good import -----------------------------------------------------------------------------


def test_valid_manifest_with_metrics_and_provenance_imports(db, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    (d / "img").mkdir(parents=True)
    px = [benign(10), adversarial(10, 12), adversarial(11, 7), benign(11)]
    for i, p in enumerate(px):
        (d / "img" / f"{i}.png").write_bytes(png_bytes(p, with_text=True))
    rows = [
        {
            "condition": "CB",
            "image_index": "10",
            "label": "3",
            "path": "img/0.png",
            "l0": "0",
            "l2": "0.0",
            "linf": "",
            "ssim": "1.0",
            "model_pred": "3",
            "my_metric": "hello",
            "attack": "",
            "params": "",
            "seed": "",
            "model_id": "",
        },
        {
            "condition": "CAP",
            "image_index": "10",
            "label": "3",
            "path": "img/1.png",
            "l0": "12",
            "l2": "1.75",
            "linf": "0.5",
            "ssim": "0.93",
            "model_pred": "5",
            "my_metric": "",
            "attack": "jsma",
            "params": '{"theta": 1.0, "gamma": 0.1}',
            "seed": "42",
            "model_id": "mnist-default@abc123",
        },
        {
            "condition": "CAP",
            "image_index": "11",
            "label": "9",
            "path": "./img/2.png",
            "l0": "7",
            "l2": "",
            "linf": "",
            "ssim": "",
            "model_pred": "",
            "my_metric": "2.5e-3",
            "attack": "manual",
            "params": "not json",
            "seed": "",
            "model_id": "",
        },
        {"condition": "CB", "image_index": "11", "label": "9", "path": "img/3.png"},
    ]
    write_pool(d, rows)
    assert run_import(db, study, d) == {"CB": 2, "CAP": 2}
    with db.session() as s:
        stims = {(st.condition.code, st.image_index): st for st in s.scalars(select(Stimulus))}
        cb, cap, manual = stims[("CB", 10)], stims[("CAP", 10)], stims[("CAP", 11)]
        assert (cb.label, cb.width, cb.height, cb.channels, cb.source) == (3, 28, 28, 1, "import")
        assert cb.metrics == {"l0": 0, "l2": 0.0, "linf": None, "ssim": 1.0, "model_pred": 3, "my_metric": "hello"}
        assert (cb.attack, cb.params, cb.seed, cb.model_ref) == (None, None, None, None)
        assert cap.metrics == {"l0": 12, "l2": 1.75, "linf": 0.5, "ssim": 0.93, "model_pred": 5, "my_metric": None}
        assert cap.attack == "jsma" and cap.params == {"theta": 1.0, "gamma": 0.1}
        assert cap.seed == 42 and cap.model_ref == "mnist-default@abc123"
        for key in ("attack", "params", "seed", "model_id"):  # provenance is not duplicated into metrics
            assert key not in cap.metrics
        assert manual.metrics["my_metric"] == pytest.approx(0.0025) and manual.params == {"raw": "not json"}
        for st, p in ((cb, px[0]), (cap, px[1]), (manual, px[2])):
            assert np.array_equal(decode_png(st.png), p)  # lossless
            assert b"tEXt" not in st.png and b"iTXt" not in st.png and b"zTXt" not in st.png
            assert b"secret" not in st.png and b"true_label" not in st.png
            assert len(st.public_id) >= 16


def test_source_pngs_really_had_text_chunks() -> None:
    """Guard for the test above: the source files carried metadata that had to be stripped."""
    data = png_bytes(grey(), with_text=True)
    assert b"tEXt" in data and b"iTXt" in data


@sqlite_only
def test_grey_looking_rgb_and_palette_pngs_are_accepted_for_mnist(db, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    d.mkdir()
    g = grey()
    (d / "rgb.png").write_bytes(png_bytes(np.stack([g, g, g], axis=-1)))
    Image.fromarray(g).convert("P").save(d / "pal.png")
    write_pool(
        d,
        [
            {"condition": "CB", "image_index": "0", "label": "1", "path": "rgb.png"},
            {"condition": "CB", "image_index": "1", "label": "1", "path": "pal.png"},
        ],
    )
    assert run_import(db, study, d) == {"CB": 2}
    with db.session() as s:
        for st in s.scalars(select(Stimulus)):
            assert st.channels == 1 and decode_png(st.png).shape == (28, 28)


def test_import_through_the_cli(db, settings, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    rows = good_rows(d, 3, "CB") + good_rows(d, 2, "CAP")
    write_pool(d, rows)
    result = CliRunner().invoke(
        cli, ["stimuli", "import", "--study", study, str(d), "--database-url", settings.database_url]
    )
    assert result.exit_code == 0, result.output
    assert "Imported 2 CAP, 3 CB stimuli into 'pool-study'." in result.output
    assert n_stimuli(db) == 5


def test_cli_import_of_a_bad_pool_fails_cleanly(db, settings, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    rows = good_rows(d, 2)
    rows.append({"condition": "CB", "image_index": "5", "label": "12", "path": rows[0]["path"]})
    write_pool(d, rows)
    result = CliRunner().invoke(
        cli, ["stimuli", "import", "--study", study, str(d), "--database-url", settings.database_url]
    )
    assert result.exit_code == 1
    assert "Nothing was imported" in result.output and "line 4: label 12 is out of range 0-9" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert n_stimuli(db) == 0


@sqlite_only
def test_cli_import_unknown_study_and_missing_folder(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    write_pool(d, good_rows(d, 1))
    r = CliRunner().invoke(
        cli, ["stimuli", "import", "--study", "ghost", str(d), "--database-url", settings.database_url]
    )
    assert r.exit_code == 1 and "no study with slug 'ghost'" in r.output
    r = CliRunner().invoke(
        cli, ["stimuli", "import", "--study", "ghost", str(tmp_path / "nope"), "--database-url", settings.database_url]
    )
    assert r.exit_code == 1 and "no such folder" in r.output


# --- bad pools: nothing is imported, and the message says what and where ------------------------


def _bad_file(d: Path, kind: str) -> str:
    """Write one bad image file of the given kind; returns its manifest path."""
    name = f"bad_{kind}.png"
    if kind == "corrupt":
        data = bytearray(png_bytes(grey()))
        data[60:80] = b"\x00" * 20  # smash IDAT: a CRC / zlib error
        (d / name).write_bytes(bytes(data))
    elif kind == "truncated":
        (d / name).write_bytes(png_bytes(grey())[:50])
    elif kind == "garbage":
        (d / name).write_bytes(b"this is not an image at all")
    elif kind == "jpeg":
        (d / name).write_bytes(png_bytes(grey(), fmt="JPEG"))
    elif kind == "size":
        (d / name).write_bytes(png_bytes(grey(28, 27)))
    elif kind == "colour":
        px = np.stack([grey(), grey(), grey()], axis=-1)
        (d / name).write_bytes(png_bytes(px))
    elif kind == "transparent":
        rgba = np.dstack([grey(), grey(), grey(), np.full((28, 28), 10, np.uint8)])
        (d / name).write_bytes(png_bytes(rgba))
    else:
        raise AssertionError(kind)
    return name


BAD_ROWS = [
    # (id, row overrides or a file kind, what the message must contain)
    ("corrupt-png", {"file": "corrupt"}, "not a readable PNG"),
    ("truncated-png", {"file": "truncated"}, "not a readable PNG"),
    ("not-an-image", {"file": "garbage"}, "not a readable PNG"),
    ("jpeg-renamed", {"file": "jpeg"}, "is a JPEG file, not a PNG"),
    ("wrong-size", {"file": "size"}, "is 27x28 pixels, expected 28x28"),
    ("colour-for-mnist", {"file": "colour"}, "is a colour image; this dataset's images are greyscale"),
    ("transparent", {"file": "transparent"}, "transparent pixels"),
    ("unknown-condition", {"condition": "CXX"}, "unknown condition 'CXX'"),
    ("condition-not-in-study", {"condition": "CAI"}, "condition CAI is not part of study 'pool-study'"),
    ("label-too-high", {"label": "10"}, "label 10 is out of range 0-9"),
    ("label-negative", {"label": "-1"}, "label -1 is out of range 0-9"),
    ("label-not-int", {"label": "seven"}, "label 'seven' is not an integer"),
    ("index-float", {"image_index": "1.5"}, "image_index '1.5' is not a non-negative integer"),
    ("index-text", {"image_index": "abc"}, "image_index 'abc' is not a non-negative integer"),
    ("index-negative", {"image_index": "-3"}, "image_index '-3' is not a non-negative integer"),
    ("missing-file", {"path": "img/nope.png"}, "image file 'img/nope.png' not found"),
    ("escaping-path", {"path": "../outside.png"}, "path '../outside.png' must be a file inside"),
    ("absolute-path", {"path": "ABSOLUTE"}, "must be a file inside"),
    ("empty-path", {"path": ""}, "path '' must be a file inside"),
    ("duplicate-row", {"duplicate": True}, "duplicate stimulus for condition CB, image_index 0"),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
@sqlite_only
def test_one_bad_row_imports_nothing(db, study, tmp_path, case, change, message) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    rows = good_rows(d, 3)
    # the escaping file exists, so only the containment check can reject it
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(grey()))
    bad = {"condition": "CB", "image_index": "50", "label": "4", "path": rows[0]["path"]}
    if "file" in change:
        bad["path"] = _bad_file(d, change["file"])
    elif change.get("duplicate"):
        bad = dict(rows[0])
    else:
        bad.update({k: (str(outside) if v == "ABSOLUTE" else v) for k, v in change.items()})
    rows.insert(2, bad)  # a good row after it too
    write_pool(d, rows)
    with pytest.raises(ConfigError) as info:
        run_import(db, study, d)
    text = info.value.message
    assert text.startswith("Nothing was imported"), text
    assert "manifest.csv line 4:" in text and message in text, text
    assert text.count("\n") == 1, text  # only the bad row is reported
    assert n_stimuli(db) == 0


@sqlite_only
def test_every_bad_row_is_reported(db, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    rows = good_rows(d, 1)
    rows += [
        {"condition": "CB", "image_index": "x", "label": "1", "path": rows[0]["path"]},
        {"condition": "CB", "image_index": "7", "label": "99", "path": rows[0]["path"]},
        {"condition": "XX", "image_index": "8", "label": "1", "path": rows[0]["path"]},
    ]
    write_pool(d, rows)
    with pytest.raises(ConfigError) as info:
        run_import(db, study, d)
    for line in (3, 4, 5):
        assert f"manifest.csv line {line}:" in info.value.message
    assert "line 2:" not in info.value.message
    assert n_stimuli(db) == 0


def test_rows_already_in_the_study_are_refused_and_nothing_new_is_added(db, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "first"
    write_pool(d, good_rows(d, 2))
    run_import(db, study, d)
    d2 = tmp_path / "second"
    write_pool(d2, good_rows(d2, 3, start=1))  # image_index 1 is already there; 2 and 3 are new
    with pytest.raises(ConfigError, match="line 2: condition CB, image_index 1 is already in the study"):
        run_import(db, study, d2)
    assert n_stimuli(db) == 2
    # the same image_index in another condition is fine
    d3 = tmp_path / "third"
    write_pool(d3, good_rows(d3, 2, condition="CAP"))
    assert run_import(db, study, d3) == {"CAP": 2}


@pytest.mark.parametrize("missing", ["condition", "image_index", "label", "path"])
@sqlite_only
def test_a_missing_column_is_named(db, study, tmp_path, missing) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    rows = good_rows(d, 2)
    write_pool(d, rows, header=[c for c in HEADER + ["l2"] if c != missing])
    with pytest.raises(ConfigError, match=rf"missing column\(s\) {missing}; the header must include"):
        run_import(db, study, d)
    assert n_stimuli(db) == 0


@pytest.mark.parametrize(
    "content", ["", "condition,image_index,label,path\n", "\ufeffcondition,image_index,label,path\r\n"]
)
@sqlite_only
def test_an_empty_manifest_imports_nothing(db, study, tmp_path, content) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    d.mkdir()
    (d / "manifest.csv").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="missing column|has no stimulus rows"):
        run_import(db, study, d)
    assert n_stimuli(db) == 0


@sqlite_only
def test_missing_manifest_and_non_utf8_manifest(db, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    d.mkdir()
    with pytest.raises(ConfigError, match="manifest.csv: not found"):
        run_import(db, study, d)
    (d / "manifest.csv").write_bytes(b"condition,image_index,label,path\nCB,0,1,\xff\xfe.png\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        run_import(db, study, d)


@sqlite_only
def test_extra_cells_in_a_row_are_an_error(db, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    rows = good_rows(d, 1)
    write_pool(d, rows)
    with (d / "manifest.csv").open("a", encoding="utf-8") as fh:
        fh.write(f"CB,9,1,{rows[0]['path']},surplus\n")
    with pytest.raises(ConfigError, match="line 3: more cells than header columns"):
        run_import(db, study, d)
    assert n_stimuli(db) == 0


# --- export ------------------------------------------------------------------------------------

REQUIRED_EXPORT = ["stimulus_id", "condition", "image_index", "label", "path", "model_pred", "l0", "l2", "linf", "ssim"]


def test_export_writes_native_pngs_and_a_full_manifest(db, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    rows = good_rows(d, 2)
    rows[0].update({"l2": "1.5", "ssim": "0.9", "attack": "cw", "seed": "3", "extra_metric": "x"})
    rows += good_rows(d, 1, condition="CAP")
    write_pool(d, rows)
    run_import(db, study, d)
    out = tmp_path / "export"
    with db.session() as s:
        assert export_stimuli(s, get_study(s, study), out) == 3
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        exported = list(reader)
    assert header[: len(REQUIRED_EXPORT)] == REQUIRED_EXPORT
    assert "extra_metric" in header and "attack" in header and "seed" in header
    assert len(exported) == 3
    with db.session() as s:
        by_id = {st.id: (st.condition.code, st.image_index, st.label, st.png) for st in s.scalars(select(Stimulus))}
    assert sorted(int(r["stimulus_id"]) for r in exported) == sorted(by_id)
    for row in exported:
        code, index, label, png = by_id[int(row["stimulus_id"])]
        assert (row["condition"], int(row["image_index"]), int(row["label"])) == (code, index, label)
        img = Image.open(out / row["path"])
        assert img.size == (28, 28) and img.format == "PNG"  # native size, not scaled
        assert (out / row["path"]).read_bytes() == png
        assert (out / row["path"]).resolve().is_relative_to(out.resolve())
    first = next(r for r in exported if r["condition"] == "CB" and r["image_index"] == "0")
    assert (first["l2"], first["ssim"], first["attack"], first["seed"], first["extra_metric"]) == (
        "1.5",
        "0.9",
        "cw",
        "3",
        "x",
    )
    assert (first["model_pred"], first["l0"], first["linf"]) == ("", "", "")  # unknown: empty, not "None"
    other = next(r for r in exported if r["condition"] == "CAP")
    assert all(other[k] == "" for k in ("model_pred", "l0", "l2", "linf", "ssim", "attack", "seed", "extra_metric"))
    assert "None" not in (out / "manifest.csv").read_text()


def test_export_reimports_into_a_fresh_study_with_identical_pixels(db, study, toml_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    rows = good_rows(d, 3) + good_rows(d, 2, condition="CAP")
    rows[0].update({"l0": "4", "params": '{"k": 2}', "model_id": "m1"})
    write_pool(d, rows)
    run_import(db, study, d)
    out = tmp_path / "export"
    with db.session() as s:
        export_stimuli(s, get_study(s, study), out)
        create_study(s, toml_for(slug="copy-study", trials=2, conditions=("CB", "CAP")))
    assert run_import(db, "copy-study", out) == {"CB": 3, "CAP": 2}
    with db.session() as s:
        stims = list(s.scalars(select(Stimulus)))
        orig = {(st.condition.code, st.image_index): st for st in stims if st.study_id == get_study(s, study).id}
        copy = {(st.condition.code, st.image_index): st for st in stims if st.study_id == get_study(s, "copy-study").id}
        assert orig.keys() == copy.keys() and len(copy) == 5
        for key, a in orig.items():
            b = copy[key]
            assert np.array_equal(decode_png(a.png), decode_png(b.png))
            assert a.sha256 == b.sha256 and a.label == b.label
            assert (a.params, a.model_ref) == (b.params, b.model_ref)
            assert {k: v for k, v in a.metrics.items() if v is not None} == {
                k: v for k, v in b.metrics.items() if v is not None
            }
            assert a.public_id != b.public_id


@sqlite_only
def test_rgb_pool_round_trip_for_cifar10(db, toml_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = (
        toml_for(slug="cifar-pool", trials=1, conditions=("CB",))
        .replace('dataset = "mnist"', 'dataset = "cifar10"')
        .replace('norm = "l0"', 'norm = "l2"')
    )
    with db.session() as s:
        create_study(s, src)
    d = tmp_path / "pool"
    d.mkdir()
    px = RNG.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    (d / "a.png").write_bytes(png_bytes(px))
    (d / "g.png").write_bytes(png_bytes(grey(32, 32)))
    write_pool(d, [{"condition": "CB", "image_index": "0", "label": "9", "path": "a.png"}])
    assert run_import(db, "cifar-pool", d) == {"CB": 1}
    write_pool(d, [{"condition": "CB", "image_index": "1", "label": "9", "path": "g.png"}])
    with pytest.raises(ConfigError, match="is greyscale; this dataset's images are RGB"):
        run_import(db, "cifar-pool", d)
    out = tmp_path / "out"
    with db.session() as s:
        export_stimuli(s, get_study(s, "cifar-pool"), out)
    row = next(csv.DictReader((out / "manifest.csv").open(encoding="utf-8")))
    assert np.array_equal(np.asarray(Image.open(out / row["path"])), px)


def test_export_through_the_cli(db, settings, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    write_pool(d, good_rows(d, 2))
    run_import(db, study, d)
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli, ["stimuli", "export", "--study", study, "--out", str(out), "--database-url", settings.database_url]
    )
    assert r.exit_code == 0, r.output
    assert f"Wrote 2 stimuli and manifest.csv to {out}." in r.output
    assert len(list((out / "images").glob("*.png"))) == 2
    r = CliRunner().invoke(
        cli, ["stimuli", "export", "--study", "ghost", "--out", str(out), "--database-url", settings.database_url]
    )
    assert r.exit_code == 1 and "no study with slug 'ghost'" in r.output


@sqlite_only
def test_params_json_survives_export(db, study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pool"
    rows = good_rows(d, 1)
    rows[0]["params"] = json.dumps({"eps": 0.3, "steps": [1, 2]})
    write_pool(d, rows)
    run_import(db, study, d)
    with db.session() as s:
        export_stimuli(s, get_study(s, study), tmp_path / "out")
    row = next(csv.DictReader((tmp_path / "out" / "manifest.csv").open(encoding="utf-8")))
    assert json.loads(row["params"]) == {"eps": 0.3, "steps": [1, 2]}
