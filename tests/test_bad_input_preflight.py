"""Preflight refuses what cannot run (issue 23): GPU counts that are not positive integers or
exceed the machine, parquets missing a column that verl, the dataset adapter or the reward manager
reads, a local MODEL_PATH that does not exist.

The base config is the pixmo_counting recipe's, composed in-process from its exact overrides; one
case runs the preflight CLI's ``main`` on them, as ``recipes/common.sh`` does, to check that a bad
``N_GPUS_PER_NODE`` is one problem line and no traceback.
"""

from __future__ import annotations


import pyarrow.parquet as pq
import pytest
from _recipes_support import bundled_sample, cfg_with, recipe_args
from omegaconf import OmegaConf

from verl_perception import preflight

GPUS = "N_GPUS_PER_NODE (trainer.n_gpus_per_node)"
MODEL = "MODEL_PATH (actor_rollout_ref.model.path)"


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory):
    return bundled_sample(tmp_path_factory)


@pytest.fixture(scope="module")
def overrides(sample_data, tmp_path_factory):
    return recipe_args("pixmo_counting.sh", tmp_path_factory.mktemp("args"), DATA_DIR=sample_data)


@pytest.fixture(scope="module")
def base_cfg(overrides):
    return OmegaConf.to_container(preflight.compose(overrides))


def _problems(report, setting):
    return [p.message for p in report.problems if p.setting == setting]


@pytest.mark.parametrize("value", [0, -2, "abc", "", 1.5, True, None])
def test_gpu_count_must_be_a_positive_integer(base_cfg, value):
    report = preflight.Report()
    assert preflight.check_gpu_counts(cfg_with(base_cfg, trainer__n_gpus_per_node=value), report) is False
    (msg,) = _problems(report, GPUS)
    assert "positive integer" in msg and repr(value) in msg


@pytest.mark.parametrize("value", [1, 8, "4"])
def test_gpu_count_accepts_positive_integers(base_cfg, value):
    report = preflight.Report()
    assert preflight.check_gpu_counts(cfg_with(base_cfg, trainer__n_gpus_per_node=value), report) is True
    assert report.ok


@pytest.mark.parametrize("value", [0, "abc"])
def test_all_checks_with_a_bad_gpu_count_report_it_without_raising(base_cfg, value):
    report = preflight.run_checks(cfg_with(base_cfg, trainer__n_gpus_per_node=value), dry_run=True)
    assert not report.ok
    (msg,) = _problems(report, GPUS)
    assert repr(value) in msg


def test_node_count_must_be_a_positive_integer(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, trainer__nnodes=0), dry_run=True)
    assert _problems(report, "NNODES (trainer.nnodes)")


def test_more_gpus_than_the_machine_has(base_cfg):
    cfg = cfg_with(base_cfg, trainer__n_gpus_per_node=8)
    for have, refused in ((2, True), (8, False)):
        report = preflight.Report()
        preflight.check_runtime(cfg, report, gpus=have)
        assert bool(_problems(report, GPUS)) is refused


def test_cli_with_bad_gpu_count_prints_one_problem_and_no_traceback(overrides, capsys):
    # What recipes/common.sh runs: python -m verl_perception.preflight --dry-run -- <overrides>
    assert preflight.main(["--dry-run", *overrides, "trainer.n_gpus_per_node=abc"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "all checks passed" not in err
    assert "[N_GPUS_PER_NODE (trainer.n_gpus_per_node)] must be a positive integer (GPUs per node / nodes), got 'abc'" \
        in err


def _without(src, dst, column=None, field=None):
    table = pq.read_table(src)
    if column:
        table = table.drop_columns([column])
    if field:  # drop one field of the reward_model struct
        import pyarrow as pa

        rm = table.column("reward_model").combine_chunks()
        keep = [f.name for f in rm.type if f.name != field]
        new = pa.StructArray.from_arrays([rm.field(n) for n in keep], names=keep)
        table = table.set_column(table.schema.get_field_index("reward_model"), "reward_model", new)
    pq.write_table(table, dst)
    return str(dst)


@pytest.mark.parametrize(
    "key, column, field, needle",
    [
        ("data.train_files", "reward_model", None, "'reward_model'"),
        ("data.val_files", "images", None, "'images'"),
        ("data.train_files", "data_source", None, "'data_source'"),
        ("data.val_files", "prompt", None, "'prompt'"),
        ("data.train_files", "extra_info", None, "'extra_info'"),
        ("data.train_files", None, "ground_truth", "'reward_model.ground_truth'"),
    ],
)
def test_parquet_missing_a_read_column(base_cfg, tmp_path, key, column, field, needle):
    src = base_cfg["data"]["train_files"][0] if key == "data.train_files" else base_cfg["data"]["val_files"][0]
    bad = _without(src, tmp_path / "bad.parquet", column, field)
    report = preflight.Report()
    preflight.check_columns(key, bad, OmegaConf.create(base_cfg), report)
    (msg,) = _problems(report, key)
    assert needle in msg and bad in msg


def test_all_checks_refuse_a_train_parquet_without_reward_model(base_cfg, tmp_path):
    bad = _without(base_cfg["data"]["train_files"][0], tmp_path / "bad.parquet", "reward_model")
    report = preflight.run_checks(cfg_with(base_cfg, data__train_files=[bad]), dry_run=True)
    assert any("'reward_model'" in m for m in _problems(report, "data.train_files"))


def test_complete_parquets_pass_the_column_check(base_cfg):
    report = preflight.Report()
    for p in base_cfg["data"]["train_files"] + base_cfg["data"]["val_files"]:
        preflight.check_columns("data.train_files", p, OmegaConf.create(base_cfg), report)
    assert report.ok, [str(p) for p in report.problems]


def test_nonexistent_local_model_path_is_named(base_cfg, tmp_path):
    missing = str(tmp_path / "no_such_model")
    report = preflight.run_checks(cfg_with(base_cfg, actor_rollout_ref__model__path=missing), dry_run=True)
    (msg,) = _problems(report, MODEL)
    assert f"{missing} does not exist" in msg
    assert not any("cannot tell" in n for n in report.notes)
