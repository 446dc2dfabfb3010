import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dml_pipelines.core.config import BaselineConfig
from dml_pipelines.core.data.samplers import PKSampler
from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.hooks import StepContext
from tests.conftest import minimal_block


def make_cfg(**over):
    raw = minimal_block(
        sampler={"P": 4, "K": 2}, training={"epochs": 3, "device": "cpu", "seed": 0}
    )
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return BaselineConfig.model_validate(raw)


def make_loader(seed=0, n_classes=6, per_class=6):
    g = torch.Generator().manual_seed(123)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    base = torch.randint(0, 256, (n_classes, 3, 8, 8), generator=g)
    noise = torch.randint(-40, 40, (len(labels), 3, 8, 8), generator=g)
    images = (base[labels] + noise).clamp(0, 255).to(torch.uint8)
    sampler = PKSampler(labels.numpy(), 4, 2, seed=seed)
    return DataLoader(TensorDataset(images, labels), batch_sampler=sampler)


class TwoEqualRanks:
    """A process group of two ranks holding the same shard: ``all_gather``
    returns the global batch, the shard twice."""

    def all_gather(self, t):
        return torch.cat([t, t])


def two_rank_step(**fields) -> StepContext:
    """A step context under ``TwoEqualRanks`` (``fields``: epoch, global_step, …)."""
    return StepContext(dist=TwoEqualRanks(), **fields)


def make_trainer(
    cfg, checkpoint_dir=None, *, method=None, loader=None, normalize=None, **kwargs
):
    """The one Trainer factory of the engine and method tests:
    ``Trainer(assemble_run(cfg, ...))``. By default the method is built seeded
    by the config with six classes, on ``make_loader``'s data; ``method``,
    ``loader`` and ``normalize`` replace those parts; ``kwargs`` go to
    ``assemble_run`` (``validate``, ``callbacks``, ``data_fingerprint``,
    ``run_files``)."""
    from dml_pipelines.core.engine.assemble import assemble_run
    from dml_pipelines.core.engine.trainer import Trainer
    from dml_pipelines.core.methods.registry import build_method

    if method is None:
        torch.manual_seed(cfg.training.seed)
        method = build_method(cfg, 6)
    run = assemble_run(
        cfg,
        method,
        make_loader(cfg.training.seed) if loader is None else loader,
        _unit if normalize is None else normalize,
        checkpoint_dir=checkpoint_dir,
        **kwargs,
    )
    return Trainer(run)


def normalize(batch, train):
    return batch.float() / 127.5 - 1.0


_unit = normalize  # make_trainer's default (its argument shadows the name)


@pytest.fixture
def setup():
    return make_cfg, make_loader, normalize


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


class Kill(Callback):
    """Simulates a kill in the middle of epoch ``at`` (after 2 steps); shared by
    the resume tests of the engine and of every method."""

    def __init__(self, at):
        self.at, self.epoch = at, None

    def on_train_epoch_start(self, trainer, epoch):
        self.epoch = epoch

    def on_train_batch_end(self, trainer, outputs):
        if self.epoch == self.at and outputs.step == 1:
            raise KeyboardInterrupt
