import numpy as np
import torch
from sklearn.metrics import r2_score as sklearn_r2

from bindbench.core.metrics import r2_score


def test_a_perfect_predictor_has_r2_one_and_the_task_mean_has_r2_zero():
    y = torch.randn(5, 16, 3)
    assert float(r2_score(y, y)) == 1.0
    mean = y.mean(dim=1, keepdim=True).expand_as(y)
    assert abs(float(r2_score(mean, y))) < 1e-6


def test_r2_matches_sklearn_per_task_and_output_then_averaged():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(4, 16, 3, generator=gen, dtype=torch.float64)
    pred = y + 0.5 * torch.randn(4, 16, 3, generator=gen, dtype=torch.float64)
    expected = np.mean(
        [sklearn_r2(y[b].numpy(), pred[b].numpy(), multioutput="raw_values").mean() for b in range(4)]
    )
    assert abs(float(r2_score(pred, y)) - expected) < 1e-12
    per_task = r2_score(pred, y, per_task=True)
    assert per_task.shape == (4,)
    assert abs(float(per_task[1]) - sklearn_r2(y[1].numpy(), pred[1].numpy())) < 1e-12
