"""Datasets: manifest, disjoint deterministic splits, byte-identical output, the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionzero.cli.main import main
from visionzero.pairs import (
    OutputError,
    PairRecord,
    generate_pairs,
    make_contact_sheet,
    make_pair,
    read_manifest,
    write_manifest,
)
from visionzero.pairs.manifest import ManifestError
from visionzero.settings.schema import PairsSettings

SMALL = PairsSettings(image_size=96, n_train=8, n_eval=2)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_datasets_whatever_the_workers(tmp_path):
    one = generate_pairs(SMALL, "clevr", 10, tmp_path / "a", seed=5, workers=1)
    generate_pairs(SMALL, "clevr", 10, tmp_path / "b", seed=5, workers=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert len(_digest(tmp_path / "a")) == 21  # 10 pairs x 2 PNGs + manifest
    generate_pairs(SMALL, "clevr", 10, tmp_path / "c", seed=6, workers=1)
    assert _digest(tmp_path / "a")["manifest.jsonl"] != _digest(tmp_path / "c")["manifest.jsonl"]
    # the manifest reads back to the records that were returned
    assert read_manifest(tmp_path / "a") == one.records


def test_splits_are_disjoint_deterministic_and_stable_as_n_grows(tmp_path):
    small = generate_pairs(SMALL, "clevr", 10, tmp_path / "small", seed=1, n_eval=3, workers=1).records
    big = generate_pairs(SMALL, "clevr", 14, tmp_path / "big", seed=1, n_eval=3, workers=1).records
    train = [r for r in small if r.split == "train"]
    evals = [r for r in small if r.split == "eval"]
    assert len(train) == 7 and len(evals) == 3
    assert not {r.id for r in train} & {r.id for r in evals}
    assert not {r.seed for r in train} & {r.seed for r in evals}
    scenes = [json.dumps(r.scene) for r in small]
    assert len(set(scenes)) == len(scenes)  # no scene appears twice, in or across splits
    # more training pairs: the first ones and all eval pairs are unchanged
    assert [r for r in big if r.split == "eval"] == evals
    assert [r for r in big if r.split == "train"][:7] == train


def test_record_fields_and_relative_paths(tmp_path):
    records = generate_pairs(SMALL, "chart", 3, tmp_path / "charts", seed=0, n_eval=1, workers=1).records
    for r in records:
        assert r.domain == "chart" and r.spec and r.edited_spec and len(r.changes) == 1
        assert not Path(r.original).is_absolute() and r.original.endswith("_original.png")
        with Image.open(r.original_path(tmp_path / "charts")) as im:
            assert im.size == (96, 96) and im.mode == "RGB" and not im.info  # no metadata chunks
        again = make_pair("chart", SMALL, r.seed)  # a pair regenerates alone from its seed
        assert np.array_equal(again[0], np.asarray(Image.open(r.original_path(tmp_path / "charts"))))


def test_photo_splits_use_different_photos(tmp_path):
    records = generate_pairs(SMALL, "photo", 12, tmp_path / "ph", seed=0, n_eval=4, workers=1).records
    train = {r.source for r in records if r.split == "train"}
    held = {r.source for r in records if r.split == "eval"}
    assert train and held and not train & held
    assert all(r.regions and r.source.startswith("skimage:") for r in records)


def test_photo_folder_with_bad_files_makes_pairs_and_names_the_skipped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(src / f"p{k}.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\x00 not really")
    report = generate_pairs(SMALL, "photo", 4, tmp_path / "out", seed=0, n_eval=1, source=src, workers=1)
    assert len(report.records) == 4 and report.skipped == [("broken.jpg", "corrupt")]
    assert report.skipped_line == "skipped 1 file(s): broken.jpg (corrupt)"


def test_output_folder_rules(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("user data")
    with pytest.raises(OutputError, match="not empty"):
        generate_pairs(SMALL, "clevr", 2, other, workers=1)
    assert (other / "keep.txt").exists()
    out = tmp_path / "ds"
    generate_pairs(SMALL, "clevr", 4, out, n_eval=1, workers=1)
    generate_pairs(SMALL, "clevr", 2, out, n_eval=1, workers=1)  # regenerating replaces our own files
    assert len(list((out / "images").iterdir())) == 4 and len(read_manifest(out)) == 2


def test_an_interrupted_run_does_not_block_the_next(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(_Stop):
        generate_pairs(SMALL, "clevr", 3, out, n_eval=1, workers=1, progress=_stop_after(2))
    assert (out / ".incomplete").exists() and not (out / "manifest.jsonl").exists()
    report = generate_pairs(SMALL, "clevr", 3, out, n_eval=1, workers=1)
    assert report.n_train == 2 and not (out / ".incomplete").exists()
    assert len(list((out / "images").iterdir())) == 6


def test_a_killed_pair_worker_fails_the_run_in_one_line_naming_the_pairs(tmp_path):
    """As the OOM killer does: SIGKILL a pool worker mid-run. multiprocessing.Pool waited
    forever; now the run fails at once, naming the pairs in flight, and publishes nothing."""
    import multiprocessing
    import os
    import signal
    import threading

    from visionzero.pairs.generate import INCOMPLETE, WorkerLost

    killed = []

    def kill_one(_):
        if not killed and multiprocessing.active_children():
            victim = multiprocessing.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

    outcome = {}

    def run():
        try:
            generate_pairs(SMALL, "clevr", 200, tmp_path / "out", seed=0, workers=2, progress=kill_one)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "generation hung after a worker was killed"
    assert killed and isinstance(outcome.get("error"), WorkerLost)
    message = str(outcome["error"])
    assert "\n" not in message and "died" in message and "clevr-" in message
    assert (tmp_path / "out" / INCOMPLETE).exists() and not (tmp_path / "out" / "manifest.jsonl").exists()


def test_settings_where_nothing_fits_fail_before_touching_the_folder(tmp_path):
    bad = PairsSettings(image_size=32, clevr={"sizes": ["large"], "object_scale": 3.0, "min_objects": 2, "n_edits": 2})
    with pytest.raises(ValueError, match="cannot place"):
        generate_pairs(bad, "clevr", 4, tmp_path / "ds", workers=1)
    assert not (tmp_path / "ds").exists()


class _Stop(Exception):
    """Stands for a crash or a kill half-way through a run."""


def _stop_after(k: int):
    seen = []

    def progress(_: int) -> None:
        seen.append(1)
        if len(seen) == k:
            raise _Stop

    return progress


def test_manifest_round_trip_and_errors(tmp_path):
    rec = PairRecord("x-train-00000", "photo", "train", "images/a.png", "images/b.png", 7,
                     changes=[{"kind": "mirror", "box": [1, 2, 3, 4]}], regions=[{"kind": "mirror", "box": [1, 2, 3, 4]}],
                     extra={"note": "kept"})
    write_manifest(tmp_path, [rec])
    assert read_manifest(tmp_path) == [rec] and rec.boxes() == [[1, 2, 3, 4]]
    (tmp_path / "manifest.jsonl").write_text(rec.to_json() + "\n" + '{"id": "y"}\n')
    with pytest.raises(ManifestError, match=r"manifest.jsonl:2: missing domain"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "nowhere")


def test_contact_sheet_outlines_the_changes(tmp_path):
    generate_pairs(SMALL, "clevr", 4, tmp_path / "ds", n_eval=1, workers=1)
    path = make_contact_sheet(tmp_path / "ds", tmp_path / "sheet.png", n=4, thumb=96, cols=2)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[1] == 2 * (2 * 96 + 3 * 8)
    red = (sheet[..., 0] > 200) & (sheet[..., 1] < 60) & (sheet[..., 2] < 60)
    assert red.sum() > 100  # the outlines are drawn


def test_cli_makes_a_dataset_and_prints_one_summary_line(tmp_path, capsys):
    out = tmp_path / "cli"
    (tmp_path / "p.yaml").write_text("{}\n")  # schema defaults
    rc = main(["pairs", "--params", str(tmp_path / "p.yaml"), "--set", "pairs.image_size=64",
               "--domain", "clevr", "--n", "5", "--n-eval", "1", "--out", str(out), "--workers", "1",
               "--sheet", "2", "--no-progress"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(lines) == 1
    assert lines[0].startswith(f"5 clevr pairs (4 train, 1 eval) in {out} in ") and "contact_sheet.png" in lines[0]
    assert len(read_manifest(out)) == 5 and (out / "contact_sheet.png").is_file()


def test_cli_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("{}\n")
    with pytest.raises(SystemExit) as exc:
        main(["pairs", "--params", str(tmp_path / "p.yaml"), "--domain", "photo", "--n", "2",
              "--out", str(tmp_path / "o"), "--source", str(tmp_path / "missing"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vision-zero: error: photo source {tmp_path / 'missing'}: folder not found"]
