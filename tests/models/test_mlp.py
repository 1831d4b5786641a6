import numpy as np
import pytest
import torch
from scipy import stats

from bindbench.models import MLP


def test_mlp_has_depth_hidden_layers_of_width_and_a_linear_readout():
    model = MLP(input_dim=5, output_dim=3, width=7, depth=2)
    linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert linears == ["hidden.0", "hidden.1", "readout"]
    assert sum(p.numel() for p in model.parameters()) == (5 * 7 + 7) + (7 * 7 + 7) + (7 * 3 + 3)
    assert model(torch.randn(4, 6, 5)).shape == (4, 6, 3)


def test_mlp_applies_relu_between_layers():
    model = MLP(input_dim=2, output_dim=1, width=3, depth=1)
    x = torch.randn(10, 2)
    hidden = torch.relu(model.hidden[0](x))
    torch.testing.assert_close(model(x), model.readout(hidden))


def test_reference_init_is_lecun_truncated_normal_with_zero_bias():
    torch.manual_seed(0)
    model = MLP(input_dim=32, output_dim=16, width=512, depth=2, init="reference")
    for layer in [*model.hidden, model.readout]:
        weights = layer.weight.detach().double().flatten().numpy()
        scale = 1 / np.sqrt(layer.in_features)
        assert abs(weights.std() / scale - 1) < 0.02  # 1/sqrt(fan_in) after truncation
        bound = 2 * scale / stats.truncnorm(-2, 2).std()  # truncated at 2 std of the normal
        assert np.abs(weights).max() <= bound
        fitted = stats.truncnorm(-2, 2, scale=bound / 2)
        assert stats.kstest(weights, fitted.cdf).pvalue > 1e-3
        assert torch.count_nonzero(layer.bias) == 0


def test_torch_init_keeps_nn_linear_default():
    torch.manual_seed(0)
    model = MLP(input_dim=32, output_dim=16, width=512, depth=1, init="torch")
    weights = model.hidden[0].weight.detach().double().numpy()
    bound = 1 / np.sqrt(32)  # kaiming-uniform(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(weights).max() <= bound
    assert abs(weights.std() - bound / np.sqrt(3)) < 0.002
    assert torch.count_nonzero(model.hidden[0].bias) > 0


def test_unknown_init_names_the_choices():
    with pytest.raises(ValueError, match="reference, torch"):
        MLP(2, 1, init="xavier")
