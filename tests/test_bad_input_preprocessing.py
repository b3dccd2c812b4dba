"""Bad input to the preprocessing CLIs: nothing lost, nothing hangs, one ``error:`` line (issue 23).

Every case runs a real CLI's ``main`` (in this process, for speed; the interrupt cases as
``data_preprocess/coco_detection.py`` subprocesses, signalled through their process group) on a tiny
COCO-style dataset written with PIL, and checks the exit status, the one-line message and what is
left on disk: a good ``train.parquet`` from an earlier run must survive any failed run, and no
temporary file may outlive its run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_perception.preprocess import coco_detection, pageocr, pixmo_count, refcoco

ROOT = Path(__file__).resolve().parents[1]


def make_coco(root: Path, n: int, size: tuple[int, int] = (48, 64)) -> tuple[Path, Path]:
    """``n`` JPEG images of ``size`` (h, w) and an instances JSON with one box each."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    h, w = size
    Image.new("RGB", (w, h), (120, 30, 200)).save(images / "0.jpg")
    for i in range(1, n):
        os.link(images / "0.jpg", images / f"{i}.jpg")
    ann = {
        "images": [{"id": i + 1, "file_name": f"{i}.jpg", "height": h, "width": w} for i in range(n)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [2, 3, 20, 15], "iscrowd": 0}
                        for i in range(n)],
        "categories": [{"id": 1, "name": "person"}],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(ann))
    return path, images


def run_main(main, *args) -> subprocess.CompletedProcess:
    """``main(argv)`` of a converter as its CLI runs it: exit status and stderr."""
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([*map(str, args), "--quiet"])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
    return subprocess.CompletedProcess(args, code, "", err.getvalue())


def cli(*args) -> subprocess.CompletedProcess:
    return run_main(coco_detection.main, "--split", "train", *args)


def n_rows(path: Path) -> int:
    return pq.read_metadata(path).num_rows


def temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) if out.exists() else []


def one_error_line(res: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr, res.stderr
    assert lines and lines[-1].startswith("error: "), res.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    return make_coco(root, 6)


@pytest.fixture()
def good_output(tmp_path, dataset):
    ann, images = dataset
    out = tmp_path / "out"
    res = cli("--ann-file", ann, "--image-dir", images, "--output-dir", out, "--workers", 1)
    assert res.returncode == 0, res.stderr
    assert n_rows(out / "train.parquet") == 6
    return out


# --------------------------------------------------------------------------- never replace good output
def test_wrong_image_dir_keeps_the_good_output(tmp_path, dataset, good_output):
    ann, _ = dataset
    before = (good_output / "train.parquet").read_bytes()
    res = cli("--ann-file", ann, "--image-dir", tmp_path / "WRONG", "--output-dir", good_output, "--workers", 1)
    assert res.returncode == 2
    line = one_error_line(res)
    assert "6 of 6 records" in line and "missing_image" in line and str(ann) in line
    assert "WRONG/0.jpg" in line and "--allow-empty" in line and "kept" in line
    assert (good_output / "train.parquet").read_bytes() == before
    assert temps(good_output) == []


def test_empty_annotation_file_keeps_the_good_output(tmp_path, good_output, dataset):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    res = cli("--ann-file", empty, "--image-dir", dataset[1], "--output-dir", good_output)
    assert res.returncode == 2
    assert "no records" in one_error_line(res) and str(empty) in res.stderr
    assert n_rows(good_output / "train.parquet") == 6


def test_most_records_lost_to_one_reason_is_refused(tmp_path, dataset):
    ann, images = dataset
    part = tmp_path / "part"
    part.mkdir()
    for i in range(2):  # 2 of 6 images present: 4 lost to missing_image
        os.link(images / f"{i}.jpg", part / f"{i}.jpg")
    out = tmp_path / "out"
    res = cli("--ann-file", ann, "--image-dir", part, "--output-dir", out, "--workers", 1)
    assert res.returncode == 2 and "4 of 6 records" in one_error_line(res)
    assert not (out / "train.parquet").exists() and temps(out) == []
    # A minority lost is a normal run (the summary reports it).
    for i in range(2, 4):
        os.link(images / f"{i}.jpg", part / f"{i}.jpg")
    res = cli("--ann-file", ann, "--image-dir", part, "--output-dir", out, "--workers", 1)
    assert res.returncode == 0 and "missing_image: 2" in res.stderr
    assert n_rows(out / "train.parquet") == 4


def test_allow_empty_writes_anyway(tmp_path, dataset, good_output):
    res = cli("--ann-file", dataset[0], "--image-dir", tmp_path / "WRONG", "--output-dir", good_output,
              "--allow-empty")
    assert res.returncode == 0, res.stderr
    assert n_rows(good_output / "train.parquet") == 0


# --------------------------------------------------------------------------- one error line, exit 2
@pytest.mark.parametrize(
    "content, expect",
    [
        (b"", "cannot read"),
        (b'{"images": [{"id": 1, "file_na', "cannot read"),  # truncated download
        (b"\xff\xd8\xff\xe0 not json", "cannot read"),  # an image passed as --ann-file
        (b"[1, 2, 3]", "categories"),  # JSON, but not a COCO instances file
    ],
)
def test_unreadable_annotation_file_is_named(tmp_path, dataset, content, expect):
    bad = tmp_path / "instances_bad.json"
    bad.write_bytes(content)
    res = cli("--ann-file", bad, "--image-dir", dataset[1], "--output-dir", tmp_path / "out")
    assert res.returncode == 2
    line = one_error_line(res)
    assert str(bad) in line and expect in line


def test_missing_annotation_file_is_named(tmp_path, dataset):
    res = cli("--ann-file", tmp_path / "nope.json", "--image-dir", dataset[1], "--output-dir", tmp_path / "out")
    assert res.returncode == 2 and "nope.json: no such" in one_error_line(res)


def test_output_dir_that_is_a_file(tmp_path, dataset):
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = cli("--ann-file", dataset[0], "--image-dir", dataset[1], "--output-dir", afile)
    assert res.returncode == 2 and "afile: is a file" in one_error_line(res)
    assert afile.read_text() == "x"


def test_output_path_that_is_a_directory(tmp_path, dataset):
    (tmp_path / "out" / "train.parquet").mkdir(parents=True)
    res = cli("--ann-file", dataset[0], "--image-dir", dataset[1], "--output-dir", tmp_path / "out")
    assert res.returncode == 2 and "train.parquet: the output path is a directory" in one_error_line(res)


def test_unwritable_output_dir(tmp_path, dataset):
    if os.geteuid() == 0:  # root writes anywhere permissions allow; /proc refuses new directories
        target = Path("/proc/verl_perception_out")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "out"
    res = cli("--ann-file", dataset[0], "--image-dir", dataset[1], "--output-dir", target)
    assert res.returncode == 2
    assert str(target.parent) in one_error_line(res)


def test_other_converters_name_their_bad_input(tmp_path):
    out = ("--image-dir", tmp_path, "--output-dir", tmp_path / "o", "--split", "train")
    bad = tmp_path / "pages.json"
    bad.write_text('[{"image": "a.png", "text": "hel')
    res = run_main(pageocr.main, "--ann-file", bad, *out)
    assert res.returncode == 2 and str(bad) in one_error_line(res)
    refs = tmp_path / "refs.p"
    refs.write_bytes(b"\x80\x04not a pickle")
    res = run_main(refcoco.main, "--dataset", "refcoco", "--refs-file", refs, "--ann-file", tmp_path / "x.json", *out)
    assert res.returncode == 2 and str(refs) in one_error_line(res)
    counts = tmp_path / "counts.parquet"
    counts.write_bytes(b"PAR1 truncated")
    res = run_main(pixmo_count.main, "--ann-file", counts, *out)
    assert res.returncode == 2 and str(counts) in one_error_line(res)
    res = run_main(pixmo_count.main, "--ann-file", tmp_path / "none.jsonl", *out)
    assert res.returncode == 2 and "none.jsonl: no such" in one_error_line(res)


# --------------------------------------------------------------------------- interrupts and leftovers
COCO = [sys.executable, str(ROOT / "data_preprocess" / "coco_detection.py"), "--quiet", "--split", "train"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory):
    # Large enough images that two workers are still busy seconds after the start.
    return make_coco(tmp_path_factory.mktemp("coco_big"), 1500, size=(1800, 2400))


def start(ann, images, out) -> subprocess.Popen:
    return subprocess.Popen([*COCO, "--ann-file", str(ann), "--image-dir", str(images), "--output-dir", str(out),
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)


def wait_for_temp(proc: subprocess.Popen, out: Path, timeout: float = 60.0) -> str:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = temps(out)
        if found:
            time.sleep(0.5)  # let the workers start on the images
            return found[0]
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("no temporary file appeared")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_interrupt_stops_workers_and_removes_the_temp(tmp_path, big_dataset):
    # Ctrl-C (SIGINT) and a job scheduler's SIGTERM, each to the whole process group of a run
    # with two workers; both runs at once, to keep the test short.
    cases = {signal.SIGINT: 130, signal.SIGTERM: 143}
    runs = {sig: (start(*big_dataset, tmp_path / sig.name), tmp_path / sig.name) for sig in cases}
    try:
        for sig, (proc, out) in runs.items():
            wait_for_temp(proc, out)
        for sig, (proc, _) in runs.items():
            os.killpg(proc.pid, sig)
        codes = {sig: proc.wait(timeout=15) for sig, (proc, _) in runs.items()}
        deadline = time.monotonic() + 10
        while any(group_alive(p.pid) for p, _ in runs.values()) and time.monotonic() < deadline:
            time.sleep(0.05)  # the workers go too
        assert not any(group_alive(p.pid) for p, _ in runs.values())
    finally:
        for proc, _ in runs.values():
            if proc.poll() is None or group_alive(proc.pid):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for sig, (proc, out) in runs.items():
        err = proc.stderr.read()
        assert codes[sig] == cases[sig], (sig, err)
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: ")
        assert temps(out) == [] and not (out / "train.parquet").exists()


def test_stale_temp_of_a_killed_run_is_removed_but_a_live_one_is_kept(tmp_path, big_dataset):
    out = tmp_path / "out"
    ann, images = big_dataset
    killed = start(ann, images, out)
    stale = wait_for_temp(killed, out)
    os.killpg(killed.pid, signal.SIGKILL)  # no cleanup possible
    killed.wait()
    assert temps(out) == [stale]
    live = start(ann, images, out)  # its start removes the killed run's file
    try:
        deadline = time.monotonic() + 60
        while (stale in temps(out) or not temps(out)) and time.monotonic() < deadline:
            assert live.poll() is None
            time.sleep(0.05)
        (live_temp,) = temps(out)
        assert live_temp != stale
        # A second, short run for the same output while the first is writing: it must not
        # take the live run's temporary file for a stale one.
        res = cli("--ann-file", ann, "--image-dir", images, "--output-dir", out, "--limit", 3, "--workers", 1)
        assert res.returncode == 0, res.stderr
        assert live.poll() is None and temps(out) == [live_temp]
        assert n_rows(out / "train.parquet") == 3
    finally:
        os.killpg(live.pid, signal.SIGKILL)
        live.wait()
