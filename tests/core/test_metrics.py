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


def test_mutual_information_is_zero_for_independence_and_the_entropy_for_a_copy():
    from sklearn.metrics import mutual_info_score

    from bindbench.core.metrics import mutual_information

    slot = torch.arange(4).repeat_interleave(8)  # every slot with every colour equally often
    colour = torch.arange(8).repeat(4)
    assert mutual_information(slot, colour) == 0.0
    same = torch.arange(8).repeat(5)  # slot = colour index
    assert abs(mutual_information(same, same) - np.log(8)) < 1e-12
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 5, (300,), generator=gen), torch.randint(0, 7, (300,), generator=gen)
    y = torch.where(torch.rand(300, generator=gen) < 0.5, x, y)  # half copied
    assert abs(mutual_information(x, y) - mutual_info_score(x.numpy(), y.numpy())) < 1e-12
    assert np.isnan(mutual_information(torch.zeros(0), torch.zeros(0)))
