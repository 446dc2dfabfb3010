"""Kills the surviving mutants of ``label_smoothed_ce`` (docs/mutation.md): its
default temperature (1) and smoothing (0.1)."""

import torch
import torch.nn.functional as F

from dml_pipelines.core.losses.label_smoothed_ce import label_smoothed_ce


def test_defaults_are_temperature_one_and_smoothing_a_tenth():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=g) * 3
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(label_smoothed_ce(logits, labels), expected)
