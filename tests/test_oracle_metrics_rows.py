"""Evaluation rows (metrics/rows.py) by hand: parquet reading, image entries, row validation and
joining responses, with the values and the error each bad input gets."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_perception.metrics.rows import (
    EvalInputError,
    _jsonable,
    image_cell,
    join_responses,
    make_eval_row,
    open_image,
    read_parquet_rows,
    read_responses,
)


def _png(mode="RGB", color=(10, 20, 30), size=(4, 3)):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_jsonable_by_hand():
    value = {"a": np.array([1, 2]), 3: (np.int64(4), [np.float32(0.5)]), "m": {"k": np.bool_(True)}, "s": "x"}
    out = _jsonable(value)
    assert out == {"a": [1, 2], "3": [4, [0.5]], "m": {"k": True}, "s": "x"}
    assert type(out["3"][0]) is int and type(out["m"]["k"]) is bool and type(out["a"][0]) is int


def test_read_parquet_rows(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"i": [0, 1, 2], "info": [{"k": [1, 2]}, {"k": [3]}, {"k": []}]}), path)
    assert read_parquet_rows(path) == [{"i": 0, "info": {"k": [1, 2]}}, {"i": 1, "info": {"k": [3]}},
                                       {"i": 2, "info": {"k": []}}]
    assert [r["i"] for r in read_parquet_rows(path, limit=2)] == [0, 1]
    assert read_parquet_rows(path, limit=0) == [] and read_parquet_rows(path, limit=-3) == []
    assert len(read_parquet_rows(path, limit=10)) == 3
    with pytest.raises(EvalInputError, match=r"data file '.*missing.parquet' does not exist"):
        read_parquet_rows(tmp_path / "missing.parquet")


def test_open_image_by_hand(tmp_path):
    img = open_image({"bytes": _png()})
    assert img.mode == "RGB" and img.size == (4, 3) and img.getpixel((0, 0)) == (10, 20, 30)
    # alpha over white: a transparent pixel becomes white, an opaque one keeps its colour
    assert open_image({"bytes": _png("RGBA", (10, 20, 30, 0))}).getpixel((1, 1)) == (255, 255, 255)
    assert open_image({"bytes": _png("RGBA", (10, 20, 30, 255))}).getpixel((1, 1)) == (10, 20, 30)
    assert open_image({"bytes": _png("L", 7)}).getpixel((0, 0)) == (7, 7, 7)
    p = tmp_path / "a.png"
    p.write_bytes(_png(color=(1, 2, 3)))
    for cell in ({"path": str(p)}, {"image": str(p)}, {"path": "file://" + str(p)}, {"bytes": b"", "path": str(p)},
                 {"path": "", "image": str(p)}):
        assert open_image(cell).getpixel((0, 0)) == (1, 2, 3), cell
    with pytest.raises(EvalInputError, match="^row has no image$"):
        open_image(None)
    with pytest.raises(EvalInputError, match=r"^image entry has neither bytes nor a path: keys \['bytes', 'x'\]$"):
        open_image({"bytes": None, "x": 1})
    with pytest.raises(EvalInputError, match="image entry has neither bytes nor a path"):
        open_image({"path": 5})
    with pytest.raises(EvalInputError, match="^cannot decode image: "):
        open_image({"bytes": b"not an image"})
    with pytest.raises(EvalInputError, match="^cannot decode image: "):
        open_image({"path": str(tmp_path / "missing.png")})


def test_image_cell_more_forms():
    assert image_cell({"images": None}) is None
    assert image_cell({"images": ({"path": "c.png"},)}) == {"path": "c.png"}
    assert image_cell({"images": [b"q", b"r"]}) == {"bytes": b"q"}
    assert image_cell({"images": np.array([{"bytes": b"s"}], dtype=object)}) == {"bytes": b"s"}


def _parquet_row(**extra):
    info = {"input_size": [100, 200], "orig_size": [200, 400], "index": 7, "split": "val", **extra}
    return {"data_source": "refcoco", "reward_model": {"ground_truth": json.dumps({"bbox": [1, 2, 3, 4]})},
            "extra_info": info}


def test_make_eval_row_by_hand():
    r = make_eval_row(3, _parquet_row(), "answer")
    assert (r.position, r.data_source, r.gt, r.input_size, r.orig_size, r.response) == (
        3, "refcoco", {"bbox": [1, 2, 3, 4]}, (100, 200), (200, 400), "answer")
    assert r.split == "val" and r.index == 7 and r.row["data_source"] == "refcoco"
    assert r.to_original(np.array([[10, 10, 20, 20]])).tolist() == [[20, 20, 40, 40]]
    r3 = make_eval_row(0, _parquet_row(model_family="qwen3_vl"), "")
    assert r3.answer_to_original(np.array([[500, 500]])).tolist() == [[200, 100]]
    no_orig = _parquet_row()
    del no_orig["extra_info"]["orig_size"]
    assert make_eval_row(0, no_orig, None).orig_size == (100, 200)  # the input frame itself
    assert make_eval_row(0, _parquet_row(input_size=[99.6, 200.2]), None).input_size == (100, 200)
    bare = make_eval_row(5, {"reward_model": {"ground_truth": "{}"}, "extra_info": {"input_size": [1, 1]}}, None)
    assert bare.split == "all" and bare.index == 5 and bare.data_source == ""
    with pytest.raises(EvalInputError, match=r"^row 2: reward_model.ground_truth is missing$"):
        make_eval_row(2, {"extra_info": {}}, None)
    with pytest.raises(EvalInputError, match="^row 2: ground_truth is not valid JSON"):
        make_eval_row(2, {"reward_model": {"ground_truth": "{x"}, "extra_info": {}}, None)
    with pytest.raises(EvalInputError, match=r"^row 1: extra_info\['input_size'\] is missing \(the frame the model saw\)$"):
        make_eval_row(1, {"reward_model": {"ground_truth": "{}"}}, None)
    for bad in ([0, 5], [5], "ab", [float("nan"), 3], [3, -1]):
        with pytest.raises(EvalInputError, match=r"^row 4: extra_info\['input_size'\] must be"):
            make_eval_row(4, _parquet_row(input_size=bad), None)
    with pytest.raises(EvalInputError, match=r"^row 4: extra_info\['orig_size'\] must be positive, got \[0, 3\]$"):
        make_eval_row(4, _parquet_row(orig_size=[0, 3]), None)
    with pytest.raises(EvalInputError, match=r"^row 4: extra_info\['input_size'\] must be \[h, w\], got 'ab'$"):
        make_eval_row(4, _parquet_row(input_size="ab"), None)
    with pytest.raises(EvalInputError, match=r"^row 6: extra_info\['model_family'\]: unknown model family 'llava'"):
        make_eval_row(6, _parquet_row(model_family="llava"), None)


def test_read_responses_by_hand(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"row": 0, "response": "a"}\n\n{"row": 1, "response": null}\n')
    assert read_responses(p) == [{"row": 0, "response": "a"}, {"row": 1, "response": None}]
    p.write_text('{"row": 0, "response": "a"}\nnot json\n')
    with pytest.raises(EvalInputError, match=r"r.jsonl:2: not a JSON line \(Expecting value: line 1 column 1 \(char 0\)\): pass the responses.jsonl "):
        read_responses(p)
    p.write_text('{"row": 0}\n')
    with pytest.raises(EvalInputError, match=r"r.jsonl:1: a line must be an object with a 'response' key$"):
        read_responses(p)
    p.write_text('[1]\n')
    with pytest.raises(EvalInputError, match="a line must be an object"):
        read_responses(p)
    with pytest.raises(EvalInputError, match=r"^responses file '.*nope.jsonl' does not exist$"):
        read_responses(tmp_path / "nope.jsonl")


def test_join_responses_by_hand():
    rows = [_parquet_row(index=10), _parquet_row(index=11), _parquet_row(index=12)]
    out = join_responses(rows, [{"row": 2, "index": 12, "response": "c"}, {"row": 0, "response": None},
                                {"row": 1, "index": None, "response": 5}])
    # a null or non-string response is no answer: missing (None, scored as empty and counted as missing)
    assert [r.response for r in out] == [None, None, "c"] and [r.position for r in out] == [0, 1, 2]
    out = join_responses(rows, [{"response": "a"}, {"response": "b"}])  # by order
    assert [r.response for r in out] == ["a", "b", None]
    with pytest.raises(EvalInputError, match="^responses mix lines with and without 'row'; regenerate them$"):
        join_responses(rows, [{"row": 0, "response": "a"}, {"response": "b"}])
    with pytest.raises(EvalInputError, match="^4 responses for 3 parquet rows: wrong --data\\?$"):
        join_responses(rows, [{"response": "a"}] * 4)
    with pytest.raises(EvalInputError, match="^response for row 3 but the parquet has 3 rows: wrong --data\\?$"):
        join_responses(rows, [{"row": 3, "response": "a"}])
    with pytest.raises(EvalInputError, match="^response for row -1 but the parquet has 3 rows"):
        join_responses(rows, [{"row": -1, "response": "a"}])
    with pytest.raises(EvalInputError, match="response line for row 1 has index 99 but the row's extra_info.index is 11"):
        join_responses(rows, [{"row": 1, "index": 99, "response": "a"}])
    unindexed = [_parquet_row(), _parquet_row()]
    for r in unindexed:
        del r["extra_info"]["index"]
    assert join_responses(unindexed, [{"row": 1, "index": 5, "response": "x"}])[1].response == "x"
