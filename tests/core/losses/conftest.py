import pytest
import torch


@pytest.fixture
def batch():
    """Random normalised float64 embeddings with 4 classes × 3 samples."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(
        torch.randn(12, 6, generator=g, dtype=torch.float64), dim=1
    )
    y = torch.arange(4).repeat_interleave(3)
    return x, y
