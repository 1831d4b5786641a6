import pytest
import torch

from bindbench.models.slot_attention import (
    Layout,
    MLPBroadcastDecoder,
    SlotAttention,
    SlotAutoencoder,
    SlotMLPAutoencoder,
    position_grid,
)

B, N, D_IN, K, D = 3, 10, 5, 4, 8
SIZES = dict(resolution=16, num_slots=3, channels=8, slot_dim=16, hidden=32)
CHEAP = Layout(encoder_stride=2, decoder="mlp", decoder_hidden=16)
AUTOENCODERS = {
    "slot_attention": lambda: SlotAutoencoder(**SIZES),
    "slot_mlp": lambda: SlotMLPAutoencoder(**SIZES),
    "slot_attention, cheap": lambda: SlotAutoencoder(**SIZES, layout=CHEAP),
    "slot_mlp, cheap": lambda: SlotMLPAutoencoder(**SIZES, layout=CHEAP),
}


def slot_attention(**kwargs) -> SlotAttention:
    torch.manual_seed(0)
    return SlotAttention(num_slots=K, dim=D, hidden=16, input_dim=D_IN, **kwargs)


def draw(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, D_IN, generator=g), torch.randn(B, K, D, generator=g)


def gru_by_hand(gru: torch.nn.GRUCell, x, h):
    """The GRU equations (reset gate applied after the hidden matmul), written out."""
    ir, iz, in_ = (x @ gru.weight_ih.T + gru.bias_ih).chunk(3, dim=-1)
    hr, hz, hn = (h @ gru.weight_hh.T + gru.bias_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    return (1 - z) * torch.tanh(in_ + r * hn) + z * h


def test_one_iteration_follows_the_papers_equations():
    sa = slot_attention(iters=1)
    x, noise = draw()
    out = sa(x, noise=noise)
    with torch.no_grad():
        inputs = sa.norm_inputs(x)
        k, v = inputs @ sa.to_k.weight.T, inputs @ sa.to_v.weight.T  # (b, n, d)
        slots = sa.mu + sa.log_sigma.exp() * noise
        q = sa.norm_slots(slots) @ sa.to_q.weight.T / D**0.5  # (b, k, d)
        attention = (q @ k.transpose(1, 2)).softmax(dim=1)  # (b, k, n)
        weights = (attention + 1e-8) / (attention + 1e-8).sum(dim=2, keepdim=True)
        slots = gru_by_hand(sa.gru, weights @ v, slots)
        slots = slots + sa.mlp(sa.norm_mlp(slots))
    assert out.slots.shape == (B, K, D) and out.attention.shape == (B, K, N)
    torch.testing.assert_close(out.slots, slots)
    torch.testing.assert_close(out.attention, attention)


def test_each_input_spreads_a_unit_of_attention_over_the_slots():
    attention = slot_attention()(draw()[0]).attention
    assert (attention > 0).all()
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(B, N))


def test_the_update_is_a_weighted_mean_so_equal_inputs_give_their_value():
    sa = slot_attention(iters=1)
    x, noise = draw()
    x = x[:, :1].expand(B, N, D_IN)  # N copies of one input: a sum would give N times its value
    with torch.no_grad():
        v = sa.to_v(sa.norm_inputs(x[:, :1])).expand(B, K, D)
        slots = sa.mu + sa.log_sigma.exp() * noise
        slots = sa.gru(v.reshape(-1, D), slots.reshape(-1, D)).view(B, K, D)
        slots = slots + sa.mlp(sa.norm_mlp(slots))
    torch.testing.assert_close(sa(x, noise=noise).slots, slots)


def test_permuting_the_initial_noise_permutes_the_slots():
    sa = slot_attention()
    x, noise = draw()
    perm = torch.tensor([2, 0, 3, 1])
    out, permuted = sa(x, noise=noise), sa(x, noise=noise[:, perm])
    torch.testing.assert_close(permuted.slots, out.slots[:, perm])
    torch.testing.assert_close(permuted.attention, out.attention[:, perm])


def test_permuting_the_inputs_leaves_the_slots_unchanged():
    sa = slot_attention()
    x, noise = draw()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(2))
    out, permuted = sa(x, noise=noise), sa(x[:, perm], noise=noise)
    torch.testing.assert_close(permuted.slots, out.slots)
    torch.testing.assert_close(permuted.attention, out.attention[:, :, perm])


def test_initial_slots_are_sampled_per_call_even_in_eval_and_follow_a_generator():
    sa = slot_attention().eval()
    x, _ = draw()
    first, again = (
        sa(x, generator=torch.Generator().manual_seed(5)),
        sa(x, generator=torch.Generator().manual_seed(5)),
    )
    torch.testing.assert_close(first.slots, again.slots)
    assert not torch.allclose(sa(x).slots, sa(x).slots)
    assert sa(x, noise=torch.randn(B, 6, D)).slots.shape == (B, 6, D)  # the noise may bring its own k


def gradients(sa: SlotAttention, x, noise) -> tuple[torch.Tensor, dict]:
    sa.zero_grad(set_to_none=True)
    slots = sa(x, noise=noise).slots
    (slots * torch.linspace(-1, 1, slots.numel()).view_as(slots)).sum().backward()
    return slots.detach(), {name: p.grad for name, p in sa.named_parameters()}


def test_implicit_changes_the_gradient_but_not_the_slots():
    x, noise = draw()
    slots, grads = gradients(slot_attention(), x, noise)
    implicit_slots, implicit_grads = gradients(slot_attention(implicit=True), x, noise)
    torch.testing.assert_close(implicit_slots, slots)
    assert grads["mu"].abs().sum() > 0 and grads["log_sigma"].abs().sum() > 0
    assert implicit_grads["mu"] is None and implicit_grads["log_sigma"] is None  # used before the last step
    assert not torch.allclose(implicit_grads["to_q.weight"], grads["to_q.weight"])
    assert not torch.allclose(implicit_grads["to_k.weight"], grads["to_k.weight"])


def test_implicit_gradient_is_the_last_iterations_from_detached_slots():
    x, noise = draw()
    sa = slot_attention(implicit=True)
    _, implicit_grads = gradients(sa, x, noise)
    sa.zero_grad(set_to_none=True)
    inputs = sa.norm_inputs(x)
    keys, values = sa.to_k(inputs), sa.to_v(inputs)
    with torch.no_grad():
        slots = sa.mu + sa.log_sigma.exp() * noise
        for _ in range(sa.iters - 1):
            slots, _ = sa.step(slots, keys, values)
    assert not slots.requires_grad
    slots = sa.step(slots, keys, values).slots
    (slots * torch.linspace(-1, 1, slots.numel()).view_as(slots)).sum().backward()
    for name, p in sa.named_parameters():
        if p.grad is None:
            assert implicit_grads[name] is None, name
        else:
            torch.testing.assert_close(implicit_grads[name], p.grad, msg=name)


def scenes(n=8, size=16, seed=0) -> torch.Tensor:
    """A fixed batch of two coloured squares on a grey background, (n, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), 0.5)
    for i in range(n):
        for _ in range(2):
            y, x = torch.randint(0, size - 5, (2,), generator=g).tolist()
            images[i, :, y : y + 5, x : x + 5] = torch.rand(3, 1, 1, generator=g)
    return images


@pytest.mark.parametrize("kind", AUTOENCODERS)
def test_autoencoder_composites_its_slots_with_masks_that_sum_to_one(kind):
    torch.manual_seed(0)
    out = AUTOENCODERS[kind]()(scenes(n=2))
    assert out.reconstruction.shape == (2, 3, 16, 16)
    assert out.masks.shape == (2, 3, 16, 16) and out.slot_rgb.shape == (2, 3, 3, 16, 16)
    assert out.slots.shape == (2, 3, 16)
    assert (out.attention is None) == kind.startswith("slot_mlp")
    if out.attention is not None:  # the strided encoder gives a quarter of the inputs
        assert out.attention.shape == (2, 3, 8 * 8 if "cheap" in kind else 16 * 16)
    torch.testing.assert_close(out.masks.sum(dim=1), torch.ones(2, 16, 16))
    torch.testing.assert_close(out.reconstruction, (out.masks[:, :, None] * out.slot_rgb).sum(dim=1))


@pytest.mark.parametrize("kind", ["slot_attention", "slot_attention, cheap"])
def test_slot_order_does_not_change_the_reconstruction(kind):
    torch.manual_seed(0)
    model, images = AUTOENCODERS[kind](), scenes(n=2)
    noise = torch.randn(2, 3, 16)
    out, permuted = model(images, noise=noise), model(images, noise=noise[:, [2, 0, 1]])
    torch.testing.assert_close(permuted.masks, out.masks[:, [2, 0, 1]])
    torch.testing.assert_close(permuted.reconstruction, out.reconstruction)


@pytest.mark.parametrize("kind", AUTOENCODERS)
def test_adam_steps_reduce_the_reconstruction_error(kind):
    torch.manual_seed(0)
    model, images = AUTOENCODERS[kind](), scenes()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(model(images, generator=g).reconstruction, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("layout", ["", ", cheap"])
def test_the_slot_mlp_baseline_differs_from_the_slot_model_only_in_its_slot_module(layout):
    slot, baseline = AUTOENCODERS["slot_attention" + layout](), AUTOENCODERS["slot_mlp" + layout]()

    def shapes(model, part):
        return {name: p.shape for name, p in getattr(model, part).named_parameters()}

    for part in ["encoder", "decoder"]:
        assert type(getattr(slot, part)) is type(getattr(baseline, part))
        assert shapes(slot, part) == shapes(baseline, part)
    tops = {name.split(".")[0] for name, _ in slot.named_parameters()}
    assert tops == {"encoder", "decoder", "slot_attention"}
    assert {name.split(".")[0] for name, _ in baseline.named_parameters()} == {
        "encoder",
        "decoder",
        "slot_mlp",
    }


def test_the_mlp_decoder_is_a_per_pixel_mlp_on_slot_plus_position():
    torch.manual_seed(0)
    decoder = MLPBroadcastDecoder((5, 7), slot_dim=6, hidden=9, layers=3)
    slots = torch.randn(2, 3, 6)
    rgb, alpha = decoder(slots)
    grid = position_grid(5, 7).permute(1, 2, 0)  # (h, w, 4)
    x = slots[:, :, None, None, :] + decoder.position(grid)  # the (b, k, h, w, d) broadcast, built
    linears = [decoder.first] + [m for m in decoder.rest if isinstance(m, torch.nn.Linear)]
    for i, linear in enumerate(linears):
        x = x @ linear.weight.T + linear.bias
        x = x.relu() if i < len(linears) - 1 else x
    torch.testing.assert_close(rgb, x[..., :3].permute(0, 1, 4, 2, 3))
    torch.testing.assert_close(alpha, x[..., 3])


def test_bad_sizes_are_rejected_with_the_parameter_named():
    with pytest.raises(ValueError, match="iters=0"):
        SlotAttention(num_slots=K, dim=D, iters=0)
    with pytest.raises(ValueError, match="num_slots=0"):
        SlotMLPAutoencoder(resolution=16, num_slots=0)
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        AUTOENCODERS["slot_attention"]()(torch.zeros(1, 3, 12, 12))
    with pytest.raises(ValueError, match="decoder='deconv'"):
        SlotAutoencoder(**SIZES, layout=Layout(decoder="deconv"))


def test_decoding_a_subset_of_pixels_gives_those_pixels_of_the_full_decoding():
    torch.manual_seed(0)
    model, images = AUTOENCODERS["slot_attention, cheap"](), scenes(n=2)
    noise, pixels = torch.randn(2, 3, 16), torch.tensor([0, 17, 200, 255, 3])
    full, part = model(images, noise=noise), model(images, noise=noise, pixels=pixels)
    torch.testing.assert_close(part.masks, full.masks.flatten(2)[:, :, pixels])
    torch.testing.assert_close(part.slot_rgb, full.slot_rgb.flatten(3)[..., pixels])
    torch.testing.assert_close(part.reconstruction, full.reconstruction.flatten(2)[:, :, pixels])
    with pytest.raises(ValueError, match="only the MLP decoder"):
        AUTOENCODERS["slot_attention"]()(images, pixels=pixels)


def test_the_mlp_decoders_fourier_features_are_sines_and_cosines_of_position():
    decoder = MLPBroadcastDecoder((5, 7), slot_dim=6, hidden=9, frequencies=2)
    y, x = position_grid(5, 7).flatten(1)[:2]  # (h*w,) each, over [0, 1]
    angles = [torch.pi * y, 2 * torch.pi * y, torch.pi * x, 2 * torch.pi * x]  # 1/2 and 1 cycle per image
    expected = torch.stack(
        [*position_grid(5, 7).flatten(1), *(a.sin() for a in angles), *(a.cos() for a in angles)]
    )
    assert decoder.grid.shape == (35, 12) and decoder.position.in_features == 12
    torch.testing.assert_close(decoder.grid, expected.T)
