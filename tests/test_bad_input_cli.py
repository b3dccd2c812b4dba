"""Bad input to the evaluation and generation CLIs (issue 23): one ``error:`` line naming the file
and the fix, exit 2, never a traceback; responses that do not belong to the data are refused; null
or non-string responses count as missing, with a warning.

The CLIs run as the console script does (``verl_perception.cli.main``), on small parquets built with
the real row builder (tests/_eval_fixtures.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _eval_fixtures import grounding_rows, write_parquet, write_responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verl_perception import cli

ANSWER = '[{"bbox_2d": [10, 10, 50, 50]}]'


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    rows = grounding_rows(4)[0]
    path = write_parquet(rows, root / "val.parquet")
    responses = write_responses([ANSWER] * 4, root / "responses.jsonl", rows)
    return Path(path), Path(responses), rows


def one_error(capsys, code: int, argv: list) -> str:
    assert cli.main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and lines, err
    assert lines[-1].startswith("error: "), err
    return lines[-1]


def evaluate(data, responses, out, *extra):
    return ["evaluate", "--task", "refcoco", "--data", data, "--responses", responses, "--out", out,
            "--overlays", 0, *extra]


def test_good_input_evaluates(data, tmp_path, capsys):
    path, responses, _ = data
    assert cli.main([str(a) for a in evaluate(path, responses, tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "metrics.json").is_file()


@pytest.mark.parametrize("content", [b"PAR1 cut short", b'{"row": 0, "response": "x"}\n', b"\x89PNG\r\n\x1a\n"])
def test_evaluate_data_that_is_not_parquet(data, tmp_path, capsys, content):
    _, responses, _ = data
    bad = tmp_path / "val.parquet"
    bad.write_bytes(content)
    line = one_error(capsys, 2, evaluate(bad, responses, tmp_path / "out"))
    assert str(bad) in line and "not a readable parquet" in line


def test_evaluate_missing_files(data, tmp_path, capsys):
    path, responses, _ = data
    assert "does not exist" in one_error(capsys, 2, evaluate(tmp_path / "none.parquet", responses, tmp_path / "o"))
    line = one_error(capsys, 2, evaluate(path, tmp_path / "none.jsonl", tmp_path / "o"))
    assert "none.jsonl" in line and "does not exist" in line


def test_evaluate_truncated_responses_file_names_the_line(data, tmp_path, capsys):
    path, responses, _ = data
    cut = tmp_path / "cut.jsonl"
    cut.write_text(responses.read_text()[:-20])
    line = one_error(capsys, 2, evaluate(path, cut, tmp_path / "o"))
    assert f"{cut}:4" in line and "not a JSON line" in line


def test_evaluate_binary_responses_file(data, tmp_path, capsys):
    path, _, _ = data
    binary = tmp_path / "responses.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    assert str(binary) in one_error(capsys, 2, evaluate(path, binary, tmp_path / "o"))


def test_evaluate_out_that_is_a_file(data, tmp_path, capsys):
    path, responses, _ = data
    afile = tmp_path / "afile"
    afile.write_text("keep")
    assert "is a file" in one_error(capsys, 2, evaluate(path, responses, afile))
    assert afile.read_text() == "keep"


def test_evaluate_unwritable_out(data, tmp_path, capsys):
    path, responses, _ = data
    target = Path("/proc/verl_perception_eval") if os.geteuid() == 0 else tmp_path / "ro" / "out"
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
    assert str(target) in one_error(capsys, 2, evaluate(path, responses, target))


@pytest.mark.parametrize("content", [b"", b'{"images": [', b"[]"])
def test_evaluate_bad_coco_ann_file(data, tmp_path, capsys, content):
    ann = tmp_path / "instances_val2017.json"
    ann.write_bytes(content)
    path, responses, _ = data
    argv = ["evaluate", "--task", "coco", "--data", path, "--responses", responses, "--out", tmp_path / "o",
            "--ann-file", ann]
    assert str(ann) in one_error(capsys, 2, argv)


def test_responses_of_another_data_source_are_refused(data, tmp_path, capsys):
    path, _, rows = data
    other = tmp_path / "other.jsonl"
    with open(other, "w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({"row": i, "index": row["extra_info"]["index"], "data_source": "pixmo_count",
                                "response": ANSWER}) + "\n")
    line = one_error(capsys, 2, evaluate(path, other, tmp_path / "o"))
    assert "pixmo_count" in line and "another file" in line


def test_responses_for_more_rows_than_the_data_are_refused(data, tmp_path, capsys):
    path, _, rows = data
    more = write_responses([ANSWER] * 6, tmp_path / "more.jsonl")
    assert "wrong --data" in one_error(capsys, 2, evaluate(path, more, tmp_path / "o"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(),
                          st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                              max_size=2), st.just(ANSWER)),
                min_size=4, max_size=4))
def test_null_or_non_string_responses_count_as_missing(data, tmp_path_factory, values):
    from verl_perception.evaluate import evaluate_benchmark

    path, _, rows = data
    root = tmp_path_factory.mktemp("resp")
    responses = root / "responses.jsonl"
    with open(responses, "w") as f:
        for i, value in enumerate(values):
            f.write(json.dumps({"row": i, "index": rows[i]["extra_info"]["index"], "response": value}) + "\n")
    doc = evaluate_benchmark("refcoco", path, responses, root / "out", n_overlays=0)
    bad = sum(not isinstance(v, str) for v in values)
    assert doc["missing_responses"] == bad
    assert any("null or non-string" in w for w in doc["warnings"]) == (bad > 0)
    # The rows answered with a string are scored exactly as a file of those alone would be.
    per_row = [json.loads(line) for line in open(root / "out" / "per_row.jsonl")]
    good = [r["iou"] for r, v in zip(per_row, values) if isinstance(v, str)]
    assert all(r["iou"] == 0.0 for r, v in zip(per_row, values) if not isinstance(v, str))
    assert len(good) == len(values) - bad


def test_generate_with_a_nonexistent_model(data, tmp_path, capsys):
    path, _, _ = data
    line = one_error(capsys, 2, ["generate", "--model", "/nonexistent/model", "--data", path,
                                 "--out", tmp_path / "r.jsonl", "--backend", "hf"])
    assert "/nonexistent/model" in line and "no such directory" in line
    empty = tmp_path / "empty_model"
    empty.mkdir()
    line = one_error(capsys, 2, ["generate", "--model", empty, "--data", path, "--out", tmp_path / "r.jsonl",
                                 "--backend", "hf"])
    assert "no config.json" in line


def test_generate_bad_data_and_out(data, tmp_path, capsys):
    path, _, _ = data
    bad = tmp_path / "val.parquet"
    bad.write_text("not parquet")
    line = one_error(capsys, 2, ["generate", "--model", "/nonexistent", "--data", bad, "--out", tmp_path / "r.jsonl"])
    assert str(bad) in line and "not a readable parquet" in line
    line = one_error(capsys, 2, ["generate", "--model", "/nonexistent", "--data", path, "--out", tmp_path])
    assert "is a directory" in line
