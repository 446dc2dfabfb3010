"""BN-neck classifier (docs/methods/intra_batch.md#the-model-and-the-loss)."""

import torch

from dml_pipelines.core.models.bn_neck import BNNeckClassifier


def test_frozen_zero_bias_and_bias_free_linear_stay_after_a_step():
    torch.manual_seed(0)
    clf = BNNeckClassifier(32, 50)
    assert clf.bn.bias.requires_grad is False and clf.fc.bias is None
    assert abs(float(clf.fc.weight.detach().std()) - 0.001) < 2e-4
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.RAdam(params, lr=0.1, weight_decay=0.1)
    w0 = clf.fc.weight.detach().clone()
    loss = clf(torch.randn(8, 32)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    assert torch.count_nonzero(clf.bn.bias) == 0 and clf.bn.bias.grad is None
    assert not torch.equal(clf.fc.weight, w0)  # the step did happen
