"""Joining the training curves of a run and of the run that continued its weights."""

import json

import pytest

from training.__main__ import main


def _write(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_join_curves_counts_on_from_first_stage(tmp_path):
    first, second, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "out/progress.json"
    _write(first, [{"step": 100, "tokens": 400, "elapsed_s": 10.0, "test_xent": 3.5}])
    _write(
        second,
        [
            {"step": 50, "tokens": 200, "elapsed_s": 4.0, "test_xent": 3.4, "density": 0.1},
            {"step": 100, "tokens": 400, "elapsed_s": 8.5, "test_xent": 3.3, "density": 0.0625},
        ],
    )
    main(["join-curves", str(first), str(second), "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in records] == [100, 150, 200]
    assert [r["tokens"] for r in records] == [400, 600, 800]
    assert [r["elapsed_s"] for r in records] == [10.0, 14.0, 18.5]
    assert [r["test_xent"] for r in records] == [3.5, 3.4, 3.3]  # metrics are not touched
    assert records[2]["density"] == 0.0625


def test_join_curves_names_missing_file(tmp_path):
    with pytest.raises(SystemExit, match="absent.json is not a file"):
        main(["join-curves", str(tmp_path / "absent.json"), str(tmp_path / "b.json"), "--out", "x"])


def test_join_curves_rejects_empty_first_stage(tmp_path):
    (tmp_path / "a.json").write_text("")
    _write(tmp_path / "b.json", [{"step": 1}])
    with pytest.raises(SystemExit, match="^error: .*a.json contains no progress records"):
        main(["join-curves", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", "x"])
