"""evaluate's files and report, the paper table, clear errors, and the verl-perception console script."""

from __future__ import annotations

import json

import _eval_fixtures as fx
import pytest
from PIL import Image

from verl_perception import cli
from verl_perception.evaluate import evaluate_benchmark, main
from verl_perception.metrics.rows import EvalInputError
from verl_perception.report import NOT_STATED, PAPER_RESULTS


def _grounding(tmp_path, n=4):
    rows, _ = fx.grounding_rows(n=n)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    answers = [json.dumps({"bbox_2d": json.loads(r["reward_model"]["ground_truth"])["bbox"]}) for r in rows]
    return rows, data, fx.write_responses(answers, tmp_path / "r.jsonl", rows)


def test_cli_writes_metrics_report_overlays_and_plot(tmp_path, capsys):
    rows, data, resp = _grounding(tmp_path)
    out = tmp_path / "out"
    assert main(["--task", "refcoco", "--data", data, "--responses", resp, "--out", str(out), "--overlays", "3"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["metrics"]["acc@0.5"] == 1.0 and doc["n_rows"] == 4 and doc["missing_responses"] == 0
    assert len(doc["overlays"]) == 3 and doc["plots"][0].endswith("iou_hist.png")
    for p in doc["overlays"] + doc["plots"]:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 100
    report = (out / "report.md").read_text()
    assert "Qwen2.5-VL-3B-Instruct (paper)" in report and "Perception-R1 (paper)" in report
    assert "overlays/row00000.png" in report and "refcoco+/testA" in report
    assert "report:" in capsys.readouterr().out


def test_paper_table_marks_unknown_cells_and_keeps_stated_values(tmp_path):
    rows, truth = fx.detection_rows(n=2)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    resp = fx.write_responses(["[]", "[]"], tmp_path / "r.jsonl", rows)
    evaluate_benchmark("coco", data, resp, tmp_path / "out", n_overlays=0)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| AP | 0.0 | not stated | 31.9 |" in report
    assert "| AP50 | 0.0 | not stated | not stated |" in report
    assert "the paper does not report that number" in report and "PAPER" not in report
    # only numbers the paper reports are filled in
    assert PAPER_RESULTS["coco"]["r1"] == {"AP": 31.9}
    assert all(not PAPER_RESULTS[b]["base"] for b in PAPER_RESULTS)
    assert NOT_STATED == "not stated"


def test_missing_responses_are_scored_empty_and_reported(tmp_path):
    rows, data, _ = _grounding(tmp_path)
    resp = tmp_path / "partial.jsonl"
    resp.write_text(
        json.dumps(
            {
                "row": 1,
                "index": 1,
                "response": json.dumps({"bbox_2d": json.loads(rows[1]["reward_model"]["ground_truth"])["bbox"]}),
            }
        )
        + "\n"
    )
    doc = evaluate_benchmark("refcoco", data, resp, tmp_path / "out", n_overlays=0)
    assert doc["missing_responses"] == 3 and doc["metrics"]["acc@0.5"] == pytest.approx(0.25)
    assert "3 of 4 rows have no response" in doc["warnings"][0]


@pytest.mark.parametrize(
    "task,responses,match",
    [
        ("coco", None, "is a grounding row"),
        ("refcoco", '{"row": 0, "index": 9, "response": "x"}\n', "generated from another file"),
        ("refcoco", '{"row": 99, "response": "x"}\n', "wrong --data"),
        ("refcoco", "not json\n", "not a JSON line"),
    ],
)
def test_clear_errors(tmp_path, task, responses, match):
    rows, data, resp = _grounding(tmp_path, n=2)
    if responses is not None:
        (tmp_path / "bad.jsonl").write_text(responses)
        resp = str(tmp_path / "bad.jsonl")
    with pytest.raises(EvalInputError, match=match):
        evaluate_benchmark(task, data, resp, tmp_path / "out")


def test_bad_ground_truth_is_a_clear_error(tmp_path):
    rows, _ = fx.grounding_rows(n=1)
    rows[0]["reward_model"]["ground_truth"] = "{broken"
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    resp = fx.write_responses(["x"], tmp_path / "r.jsonl", rows)
    with pytest.raises(EvalInputError, match="row 0: ground_truth is not valid JSON"):
        evaluate_benchmark("refcoco", data, resp, tmp_path / "out")


def test_corrupt_image_skips_the_overlay_not_the_metrics(tmp_path):
    rows, _ = fx.grounding_rows(n=2)
    rows[0]["images"][0]["bytes"] = b"not an image"
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    resp = fx.write_responses(["[]", "[]"], tmp_path / "r.jsonl", rows)
    doc = evaluate_benchmark("refcoco", data, resp, tmp_path / "out", n_overlays=2)
    assert len(doc["overlays"]) == 1 and any("no overlay" in n for n in doc["notes"])


def test_console_script_dispatches_evaluate_with_an_error_code(tmp_path, capsys):
    rows, data, resp = _grounding(tmp_path, n=2)
    assert (
        cli.main(["evaluate", "--task", "refcoco", "--data", data, "--responses", resp, "--out", str(tmp_path / "o")])
        == 0
    )
    assert (
        cli.main(["evaluate", "--task", "pageocr", "--data", data, "--responses", resp, "--out", str(tmp_path / "p")])
        == 2
    )
    assert "is a grounding row" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["nonsense"])


def test_limit_evaluates_the_first_rows_only(tmp_path):
    rows, data, resp = _grounding(tmp_path, n=4)
    doc = evaluate_benchmark("refcoco", data, resp, tmp_path / "out", n_overlays=0, limit=2)
    assert doc["n_rows"] == 2 and doc["missing_responses"] == 0 and doc["metrics"]["acc@0.5"] == 1.0


def _cli(tmp_path, data, resp, *extra):
    return main(["--task", "refcoco", "--data", data, "--responses", str(resp), "--out", str(tmp_path / "o"), *extra])


def test_clean_run_prints_no_warning_and_passes_strict(tmp_path, capsys):
    rows, data, resp = _grounding(tmp_path, n=2)
    assert _cli(tmp_path, data, resp, "--strict", "--overlays", "0") == 0
    captured = capsys.readouterr()
    assert captured.err == "" and '"acc@0.5": 1.0' in captured.out
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["warnings"] == []
    assert "Not comparable to the paper" not in (tmp_path / "o" / "report.md").read_text()


def test_missing_responses_warn_on_stderr_and_fail_strict(tmp_path, capsys):
    rows, data, _ = _grounding(tmp_path, n=4)
    answers = [json.dumps({"bbox_2d": json.loads(r["reward_model"]["ground_truth"])["bbox"]}) for r in rows]
    resp = fx.write_responses(answers[:1], tmp_path / "partial.jsonl", rows)
    assert _cli(tmp_path, data, resp, "--overlays", "0") == 0
    err = capsys.readouterr().err
    assert "warning: 3 of 4 rows have no response (scored as empty answers)" in err
    report = (tmp_path / "o" / "report.md").read_text()
    assert report.index("## Not comparable to the paper") < report.index("## Results")
    assert "**3 of 4 rows have no response" in report

    assert _cli(tmp_path, data, resp, "--overlays", "0", "--strict") == 1
    err = capsys.readouterr().err
    assert "error: 3 of 4 rows have no response" in err and "error: --strict: 1 warning above" in err
    assert (tmp_path / "o" / "metrics.json").is_file()  # the files are still written


def test_repeated_and_out_of_limit_responses_warn(tmp_path, capsys):
    rows, data, resp = _grounding(tmp_path, n=4)
    lines = open(resp).read().splitlines()
    (tmp_path / "dup.jsonl").write_text("\n".join([*lines, lines[0], lines[0]]) + "\n")
    assert _cli(tmp_path, data, tmp_path / "dup.jsonl", "--overlays", "0") == 0
    err = capsys.readouterr().err
    assert "warning: 2 extra response lines repeat a row already answered" in err

    assert _cli(tmp_path, data, resp, "--overlays", "0", "--limit", "3", "--strict") == 1
    err = capsys.readouterr().err
    assert "error: --limit 3: only the first 3 rows were evaluated" in err
    assert "error: 1 response line is for a row past --limit 3 and was not evaluated" in err
    assert "--strict: 2 warnings above" in err


def test_protocol_differences_are_warnings(tmp_path):
    rows, _ = fx.detection_rows(n=2)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    resp = fx.write_responses(["[]", "[]"], tmp_path / "r.jsonl", rows)
    doc = evaluate_benchmark("coco", data, resp, tmp_path / "out", n_overlays=0)
    assert any("pass --ann-file instances_val2017.json" in w for w in doc["warnings"])
