"""Two CPU processes (gloo) give the single-process step on the same global
batch: same loss, same updated weights (float32, 1e-5)."""

import pytest
import torch

from dml_pipelines.core.data.samplers import ShardedBatches
from dml_pipelines.core.engine.distributed import spawn
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.registry import build_method
from tests.conftest import minimal_block
from tests.core.engine.conftest import make_trainer

METHODS = {
    "contrastive_c1": {"loss": {"name": "contrastive_c1"}},
    "proxy_anchor": {"loss": {"name": "proxy_anchor"}},
    "intra_batch": {"lr_drops": [], "mpn": {"heads": 2, "dropout": 0.0}},
}


def _cfg(name, sync_bn=True):
    return parse_method_config(
        minimal_block(
            name,
            optimizer={"name": "sgd", "lr": 0.5},
            training={"epochs": 1, "device": "cpu", "sync_bn": sync_bn},
        )
        | METHODS[name]
    )


def _batch():
    g = torch.Generator().manual_seed(7)
    labels = torch.arange(4).repeat_interleave(4)  # global batch of 16
    base = torch.randint(0, 256, (4, 3, 12, 12), generator=g)
    noise = torch.randint(-50, 50, (16, 3, 12, 12), generator=g)
    return (base[labels] + noise).clamp(0, 255).to(torch.uint8), labels


def _normalize(batch, train):
    return batch.float() / 127.5 - 1.0


def _step(name, images, labels, rank=0, world=1):
    cfg = _cfg(name)
    torch.manual_seed(0)
    method = build_method(cfg, 4)
    if world > 1:
        from dml_pipelines.core.engine.distributed import convert_batchnorm

        convert_batchnorm(method.embedder, torch.device("cpu"))
    b = len(labels) // world
    loader = [(images[rank * b : (rank + 1) * b], labels[rank * b : (rank + 1) * b])]
    trainer = make_trainer(cfg, method=method, loader=loader, normalize=_normalize)
    history = trainer.fit()
    weights = {k: v.detach().clone() for k, v in method.state_dict().items()}
    return float(history["loss"].iloc[0]), weights


def _rank(rank, world, name, out):
    images, labels = _batch()
    loss, weights = _step(name, images, labels, rank, world)
    torch.save({"loss": loss, "weights": weights}, f"{out}.{rank}")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS))
def test_two_gloo_processes_equal_one_process_on_the_global_batch(name, tmp_path):
    images, labels = _batch()
    ref_loss, ref = _step(name, images, labels)
    out = tmp_path / "rank"
    spawn(_rank, 2, (name, str(out)))
    for rank in range(2):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        assert got["loss"] == pytest.approx(ref_loss, abs=1e-5)
        for key, value in ref.items():
            torch.testing.assert_close(
                got["weights"][key].float(), value.float(), atol=1e-5, rtol=1e-5
            )
    # the step did move the weights (the comparison is not trivially equal)
    torch.manual_seed(0)
    init = build_method(_cfg(name), 4).state_dict()
    assert any(
        not torch.allclose(init[k].float(), ref[k].float())
        for k in ref
        if ref[k].is_floating_point()
    )


def test_sharded_batches_split_every_global_batch_contiguously():
    batches = [list(range(i * 8, i * 8 + 8)) for i in range(3)]
    shards = [list(ShardedBatches(batches, r, 2)) for r in range(2)]
    for i, batch in enumerate(batches):
        assert shards[0][i] + shards[1][i] == batch
    with pytest.raises(ValueError, match="not divisible by 3 devices"):
        list(ShardedBatches(batches, 0, 3))


def test_single_process_gather_is_the_identity():
    from dml_pipelines.core.engine.distributed import Dist

    x = torch.randn(4, 3, requires_grad=True)
    assert Dist().all_gather(x) is x
    grads = [torch.ones(2)]
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = grads[0].clone()
    Dist().average_gradients([p])
    assert torch.equal(p.grad, torch.ones(2))
