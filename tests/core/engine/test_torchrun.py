"""``torchrun ... -m dml_pipelines.train`` (docs/distributed.md): two gloo
processes on one machine, two single-process "nodes" on 127.0.0.1, and an
elastic restart after a killed worker all give the one-process run's history and
weights (1e-5, relative for the loss); rank 0 alone writes."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from dml_pipelines.core.engine import launch
from dml_pipelines.core.engine.distributed import free_port
from tests.core.engine.conftest import make_cfg

ROOT = Path(__file__).resolve().parents[3]
RUN = "digits/contrastive_c1/seed0"
# SGD: Adam's normalised steps magnify float32 rounding of near-zero gradients
# (the sum over ranks is taken in another order), far beyond 1e-5 after a few
# steps; SGD keeps the difference at rounding level
PARAMS = (
    "dataset=digits,contrastive_c1.training.epochs=2,"
    "contrastive_c1.training.device=cpu,contrastive_c1.sampler.batches_per_epoch=3,"
    "contrastive_c1.optimizer.name=sgd,contrastive_c1.optimizer.lr=0.05"
)
TRAIN = ["-m", "dml_pipelines.train", "--pipelines=contrastive_c1", "--params"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TIMEOUT = 420


def _project(path: Path) -> Path:
    shutil.copytree(
        ROOT / "conf", path / "conf", ignore=shutil.ignore_patterns("local")
    )
    (path / "conf" / "local").mkdir()
    (path / "src").mkdir()  # bootstrap_project wants the source folder
    shutil.copy(ROOT / "pyproject.toml", path)
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return {**env, **extra}


def _check(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def _run(path: Path, launcher: list[str], params: str = PARAMS, **env: str) -> str:
    proc = subprocess.run(
        [*launcher, *TRAIN, params],
        cwd=path,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return _check(proc)


def _result(path: Path) -> tuple[dict, pd.DataFrame]:
    state = torch.load(
        path / "data/06_models" / RUN / "model_state.pt", weights_only=True
    )
    history = pd.read_csv(path / "data/07_model_output" / RUN / "training_history.csv")
    return state, history


def _assert_same(got: Path, ref: Path) -> None:
    (state, history), (ref_state, ref_history) = _result(got), _result(ref)
    assert list(history["epoch"]) == list(ref_history["epoch"]) == [1, 2]
    # float32 sums in another order: the losses (about 6) agree to 1e-5 of
    # their size, each weight tensor to 1e-5 of its norm (single elements drift
    # further: 2.1e-5 on one of 128 was seen after 6 steps)
    assert history["loss"].to_numpy() == pytest.approx(
        ref_history["loss"].to_numpy(), rel=1e-5, abs=1e-5
    )
    assert ref_history["loss"].iloc[1] != ref_history["loss"].iloc[0]  # it trained
    for key, value in ref_state["model"].items():
        if not value.is_floating_point():
            assert torch.equal(state["model"][key], value), key
            continue
        diff = (state["model"][key].double() - value.double()).norm()
        assert diff <= 1e-5 * max(value.double().norm(), 1.0), (key, float(diff))
    assert state["device"] == "cpu x2" and ref_state["device"] == "cpu"
    assert state["config"]["training"]["devices"] == 2
    # rank 0 alone wrote: one checkpoint, no leftover token of the launch check
    models = got / "data/06_models" / RUN
    assert sorted(p.name for p in (models / "checkpoints").iterdir()) == ["last.pt"]
    metrics = got / "data/08_reporting" / RUN / "metrics.json"
    assert metrics.exists()  # evaluation ran after training, on rank 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one-process run (no torchrun: the entry point is ``kedro run``)."""
    path = _project(tmp_path_factory.mktemp("one"))
    _run(path, [sys.executable])
    return path


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    path = _project(tmp_path_factory.mktemp("standalone"))
    _run(path, [*TORCHRUN, "--standalone", "--nproc-per-node=2"])
    return path


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process(standalone, reference):
    _assert_same(standalone, reference)


def _two_nodes(cwds: list[Path]) -> list[subprocess.CompletedProcess]:
    """Two torchrun launchers ("nodes" of one process each, c10d rendezvous on
    127.0.0.1), started in ``cwds``; their finished processes."""
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [
        subprocess.Popen(
            [
                *TORCHRUN,
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={rank}",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint={endpoint}",
                "--rdzv-id=two-nodes",
                *TRAIN,
                PARAMS,
            ],
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank, cwd in enumerate(cwds)
    ]
    done = []
    try:
        for node in nodes:
            out, err = node.communicate(timeout=TIMEOUT)
            done.append(
                subprocess.CompletedProcess(node.args, node.returncode, out, err)
            )
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    return done


@pytest.mark.slow
def test_two_nodes_on_localhost_equal_one_process(tmp_path, reference):
    path = _project(tmp_path)
    for node in _two_nodes([path, path]):
        _check(node)
    _assert_same(path, reference)


@pytest.mark.slow
def test_nodes_that_do_not_share_data_stop_with_one_line(tmp_path):
    # the second launcher runs in another project folder: its rank cannot see
    # the image cache rank 0 trains on
    a, b = _project(tmp_path / "a"), _project(tmp_path / "b")
    nodes = _two_nodes([a, b])
    assert all(node.returncode != 0 for node in nodes)
    out = "".join(node.stdout + node.stderr for node in nodes)
    assert "Error: torchrun rank 1: image cache data/" in out, out[-3000:]
    assert "every machine must see the project's data/ at the same path" in out
    assert not list((tmp_path / "a").glob("data/06_models/**/last.pt"))
    assert not list((tmp_path / "b").glob("data/06_models/**/last.pt"))


@pytest.mark.slow
def test_killed_worker_restarts_and_resumes_to_the_uninterrupted_result(
    tmp_path, standalone, reference
):
    path = _project(tmp_path)
    marker = tmp_path / "killed"
    out = _run(
        path,
        [*TORCHRUN, "--standalone", "--nproc-per-node=2", "--max-restarts=1"],
        **{launch.KILL_ENV: f"1:2:{marker}", launch.UNSHARED_STORE: "1"},
    )
    assert marker.exists()  # rank 1 was killed during epoch 2 ...
    assert "resumed from" in out and "after epoch 1" in out  # ... and resumed
    state, history = _result(path)
    ref_state, ref_history = _result(standalone)
    assert history["loss"].tolist() == ref_history["loss"].tolist()
    for key, value in ref_state["model"].items():
        assert torch.equal(state["model"][key], value), key
    _assert_same(path, reference)


def test_torchrun_world_size_replaces_training_devices_1_or_must_equal_it():
    cfg = make_cfg()
    assert launch.with_world(cfg, 4).training.devices == 4
    assert launch.with_world(make_cfg(training={"devices": 4}), 4) is not None
    with pytest.raises(ValueError, match=r"training.devices: 3, but torchrun .* 4"):
        launch.with_world(make_cfg(training={"devices": 3}), 4)


def test_no_torchrun_environment_means_one_process():
    assert launch.start({}) is None
    assert launch.start({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert launch.current() is None
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        launch.start({"WORLD_SIZE": "two"})


def test_restarts_with_the_shared_rendezvous_store_stop_with_one_line(
    monkeypatch, capsys
):
    from dml_pipelines.train import main

    for key, value in {
        "WORLD_SIZE": "2",
        "RANK": "1",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "TORCHELASTIC_MAX_RESTARTS": "1",
        "TORCHELASTIC_USE_AGENT_STORE": "True",
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["--pipelines=contrastive_c1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: torchrun --max-restarts: set ")
    assert f"{launch.UNSHARED_STORE}=1" in err and "\n" not in err
    assert launch.current() is None


def test_kill_fault_names_one_rank_and_is_validated(tmp_path):
    spec = {launch.KILL_ENV: f"1:2:{tmp_path / 'm'}"}
    assert launch.fault_callbacks(0, spec) == []
    (kill,) = launch.fault_callbacks(1, spec)
    assert (kill.epoch, kill.marker) == (2, tmp_path / "m")
    assert launch.fault_callbacks(1, {}) == []
    with pytest.raises(ValueError, match="DML_KILL_ONCE='x'"):
        launch.fault_callbacks(0, {launch.KILL_ENV: "x"})


@pytest.fixture
def one_rank_launch(monkeypatch):
    """A launch of one gloo process (this one), to run rank 0's checks."""
    import torch.distributed as dist

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        yield launch.Launch(0, 1, 0, dist.new_group(backend="gloo"))
    finally:
        dist.destroy_process_group()


def test_a_rank_seeing_another_cache_or_checkpoint_folder_is_one_line(
    tmp_path, one_rank_launch
):
    from tests.conftest import two_shape_cache

    cache = two_shape_cache(tmp_path, 6, 16)
    token = tmp_path / "checkpoints" / ".torchrun-x"
    token.parent.mkdir()
    token.touch()
    job = {
        "cache_dir": str(cache.directory),
        "cache_settings": launch._settings(cache),
        "token": str(token),
    }
    assert len(launch._check(one_rank_launch, job)) == 6
    assert not token.exists()  # rank 0 removes its token once checked
    other = {**job, "cache_settings": {**job["cache_settings"], "count": 7}}
    with pytest.raises(ValueError, match=r"^torchrun rank 0: image cache .* in count;"):
        launch._check(one_rank_launch, other)
    with pytest.raises(ValueError, match="checkpoint directory .* is not rank 0's"):
        launch._check(one_rank_launch, job)  # the token is gone: another folder
