import torch

from bindbench.core.seeds import seed_init
from bindbench.models.flow import FlowUNet, flow_loss, sample
from bindbench.tasks.prompts import Prompts


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_a_generator_trained_a_few_steps_lowers_its_flow_matching_loss():
    torch.set_num_threads(1)
    seed_init(0)
    prompts = Prompts(form="object", resolution=16)
    model = FlowUNet(len(prompts.vocab), 4, width=8, dim=16)
    draws, noise = _seeded(0), _seeded(1)
    fixed = prompts.sample(64, _seeded(2))

    def held_loss():
        with torch.no_grad():
            return float(flow_loss(model, fixed.scenes.images, fixed.tokens, _seeded(3), 0.0))

    before = held_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(60):
        batch = prompts.sample(32, draws)
        loss = flow_loss(model, batch.scenes.images, batch.tokens, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert held_loss() < 0.7 * before


def test_sampling_gives_images_in_range_keeps_the_asked_times_and_is_seeded():
    seed_init(0)
    model = FlowUNet(vocab=10, length=4, width=8, dim=16)
    with torch.no_grad():
        for p in model.out.parameters():  # a velocity that is not zero, so the images move
            p.normal_(std=0.1)
    tokens = torch.randint(10, (3, 4), generator=_seeded(0))
    images, kept = sample(model, tokens, _seeded(4), steps=10, resolution=16, keep=(0.3, 1.0))
    again, _ = sample(model, tokens, _seeded(4), steps=10, resolution=16)
    assert images.shape == (3, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, again) and set(kept) == {0.3, 1.0}
    assert torch.allclose(((kept[1.0] + 1) / 2).clamp(0, 1), images)  # the last kept is the result
    # guidance moves the images away from what the prompt alone draws
    unguided, _ = sample(model, tokens, _seeded(4), steps=10, guidance=1.0, resolution=16)
    assert not torch.equal(unguided, images)
