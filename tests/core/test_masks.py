import pytest
import torch
from torch import nn

from bindbench.core.masks import (
    MaskSearch,
    MaskSettings,
    ablate,
    apply_mask,
    density,
    find_subnetwork,
    mask_iou,
    maskable_weights,
    random_mask,
)


class Net(nn.Module):
    """Every kind of layer: masked (conv, linear) and never masked (embedding, norm, biases)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.hidden = nn.Linear(4 + 2 * 2 * 2, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, image: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.embed(token), self.conv(image).flatten(1)], dim=1)
        return self.out(self.norm(self.hidden(x)).relu())


def net_and_inputs():
    torch.manual_seed(0)
    return Net(), (torch.randn(6, 1, 2, 2), torch.randint(5, (6,)))


def full_mask(model, value: bool):
    params = dict(model.named_parameters())
    return {n: torch.full_like(params[n], value, dtype=torch.bool) for n in maskable_weights(model)}


def test_only_linear_and_conv_weights_are_maskable_and_patterns_choose_among_them():
    model, _ = net_and_inputs()
    assert maskable_weights(model) == ["conv.weight", "hidden.weight", "out.weight"]
    assert maskable_weights(model, include=["hid*", "out"]) == ["hidden.weight", "out.weight"]
    assert maskable_weights(model, exclude=["out"]) == ["conv.weight", "hidden.weight"]


def test_a_mask_of_ones_changes_nothing_and_its_ablation_removes_every_masked_weight():
    model, inputs = net_and_inputs()
    ones = full_mask(model, True)
    torch.testing.assert_close(apply_mask(model, ones)(*inputs), model(*inputs), rtol=0, atol=0)
    removed = ablate(model, ones)
    for name, param in removed.named_parameters():
        original = dict(model.named_parameters())[name]
        assert torch.equal(param, torch.zeros_like(param) if name in ones else original), name
    torch.testing.assert_close(removed(*inputs), model.out.bias.expand(6, 3))  # only the bias is left
    zeros = full_mask(model, False)
    torch.testing.assert_close(apply_mask(model, zeros)(*inputs), removed(*inputs))


def test_the_search_forward_with_ones_is_the_model_and_gradients_reach_only_the_logits():
    model, inputs = net_and_inputs()
    settings = MaskSettings(method="gumbel", init=50.0)  # sigmoid(50 + noise) > 0.5: all kept
    search = MaskSearch(model, maskable_weights(model), settings, torch.Generator().manual_seed(0))
    out = search(0.0, *inputs)
    torch.testing.assert_close(out, model(*inputs))
    (out.square().sum() + search.penalty(0.0)).backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in search.logits)


def test_the_gumbel_forward_pass_is_binary_and_the_continuous_one_sharpens_with_beta():
    model, _ = net_and_inputs()
    names = maskable_weights(model)
    gumbel = MaskSearch(model, names, MaskSettings(method="gumbel"), torch.Generator().manual_seed(0))
    masks = torch.cat([m.flatten() for m in gumbel.soft(0.5)])
    assert set(masks.unique().tolist()) == {0.0, 1.0} and 0.6 < masks.mean() < 0.98  # about sigmoid(2)
    continuous = MaskSearch(model, names, MaskSettings(init=0.02))
    assert continuous.beta(0.0) == 1.0 and continuous.beta(1.0) == pytest.approx(200.0)
    start, end = (torch.cat([m.flatten() for m in continuous.soft(p)]) for p in (0.0, 1.0))
    torch.testing.assert_close(start, torch.full_like(start, torch.sigmoid(torch.tensor(0.02)).item()))
    torch.testing.assert_close(end, torch.full_like(end, torch.sigmoid(torch.tensor(4.0)).item()))


@pytest.mark.parametrize("method", ["continuous", "gumbel"])
def test_the_search_keeps_the_weights_the_task_needs_and_drops_those_that_mislead_it(method):
    # Class = sign of x0. The model reads x0 with weight 1 and x1 (noise) with weight 3,
    # so it is near chance; the subnetwork without x1's weights is exact.
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 3.0], [-1.0, -3.0]]))
    before = model.weight.clone()
    x = torch.randn(2048, 2, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] < 0).long()  # class 0 when x0 > 0
    assert (model(x).argmax(1) == y).float().mean() < 0.7
    mask = find_subnetwork(model, (x, y), method=method, steps=300, lr=0.05)
    assert mask["weight"].tolist() == [[True, False], [True, False]]
    assert (apply_mask(model, mask)(x).argmax(1) == y).all()
    assert torch.equal(model.weight, before)  # the model itself is untouched


class Gated(nn.Module):
    """Two inputs and a BatchNorm: the class is the sign of the first input's first column."""

    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
        self.norm = nn.BatchNorm1d(2, affine=False)
        with torch.no_grad():
            self.left.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
            self.right.weight.copy_(torch.tensor([[3.0, 0.0], [-3.0, 0.0]]))  # noise, loud

    def forward(self, a, b):
        return self.norm(self.left(a) + self.right(b))


@pytest.mark.parametrize("shape", ["tuple", "dict"])
def test_the_search_takes_several_inputs_and_leaves_modes_and_buffers_alone(shape):
    model = Gated().train()  # BatchNorm in train mode would update its running statistics
    model.left.eval()  # a mixed state, restored module by module
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2048, 2, generator=g), torch.randn(2048, 2, generator=g)
    y = (a[:, 0] < 0).long()
    inputs = (a, b) if shape == "tuple" else {"a": a, "b": b}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mask = find_subnetwork(model, (inputs, y), steps=300, lr=0.05)
    assert mask["right.weight"][:, 0].tolist() == [False, False]  # the noise is cut
    assert mask["left.weight"][:, 0].tolist() == [True, True]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (model.training, model.left.training, model.norm.training) == (True, False, True)
    with pytest.raises(ValueError, match="same number of samples"):
        find_subnetwork(model, ((a, b[:5]), y), steps=1)


def test_a_random_mask_keeps_as_many_weights_per_layer_at_other_places():
    model, _ = net_and_inputs()
    generator = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    mask = {
        n: torch.rand(params[n].shape, generator=generator) < p
        for n, p in zip(maskable_weights(model), (0.1, 0.5, 0.9))
    }
    control = random_mask(mask, torch.Generator().manual_seed(1))
    assert {n: int(m.sum()) for n, m in control.items()} == {n: int(m.sum()) for n, m in mask.items()}
    assert density(control) == density(mask)
    assert any(not torch.equal(control[n], mask[n]) for n in mask)


def test_mask_iou_per_layer_by_hand():
    a = {"w": torch.tensor([True, True, False, False]), "v": torch.tensor([False, False])}
    b = {"w": torch.tensor([True, False, True, False]), "v": torch.tensor([False, False])}
    iou = mask_iou(a, b)
    assert iou["w"] == pytest.approx(1 / 3) and iou["v"] != iou["v"]  # NaN: both empty
    assert density(a) == {"w": 0.5, "v": 0.0}
    with pytest.raises(ValueError, match="different weights"):
        mask_iou(a, {"w": b["w"]})


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"method": "magnitude"}, "method='magnitude'"),
        ({"steps": 0}, "steps=0"),
        ({"lr": 0.0}, "lr=0.0"),
        ({"penalty": -1.0}, "penalty=-1.0"),
    ],
)
def test_bad_settings_are_value_errors_naming_the_parameter(settings, message):
    model = nn.Linear(2, 2)
    data = (torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=message):
        find_subnetwork(model, data, **settings)
    with pytest.raises(ValueError, match="names="):
        MaskSearch(model, ["nothing.weight"], MaskSettings())


def test_the_package_exports_the_search_and_the_ablation():
    import bindbench

    model = nn.Linear(3, 2, bias=False)
    data = (torch.randn(16, 3), torch.randint(2, (16,)))
    mask = bindbench.find_subnetwork(model, data, method="gumbel", steps=2)
    assert mask.keys() == {"weight"} and mask["weight"].dtype == torch.bool
    torch.testing.assert_close(bindbench.ablate(model, mask).weight, model.weight * ~mask["weight"])
