import torch

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
