import torch

from bindbench.models.readouts import GlobalReader, QueryLinear, QueryMLP, SlotReader


def test_query_linear_is_the_linear_map_the_query_chooses():
    torch.manual_seed(0)
    readout = QueryLinear(6, 3, 4)
    code = torch.randn(5, 6)
    for q in range(3):
        query = torch.nn.functional.one_hot(torch.full((5,), q), 3).float()
        expected = code @ readout.weight[q].T + readout.bias[q]
        assert torch.allclose(readout(code, query), expected, atol=1e-6)


def test_query_mlp_sees_code_and_query():
    torch.manual_seed(0)
    readout = QueryMLP(6, 3, 4, width=16, depth=2)
    code, query = torch.randn(5, 6), torch.eye(3)[[0, 1, 2, 0, 1]]
    assert readout(code, query).shape == (5, 4)
    assert not torch.allclose(readout(code, query), readout(code, torch.eye(3)[[1, 2, 0, 1, 2]]))


def test_slot_reader_attends_over_slots_and_ignores_their_order():
    torch.manual_seed(0)
    reader = SlotReader(16, query_dim=5, answers=7, context_dim=2, num_slots=3, channels=8, dim=16, width=16)
    images, query = torch.rand(4, 3, 16, 16), torch.eye(5)[:4]
    context = torch.eye(2)[[0, 1, 0, 1]]
    noise = torch.randn(4, 3, 16)
    slots, attention = reader.attend(images, query, noise)
    assert slots.shape == (4, 3, 16)
    assert torch.allclose(attention.sum(1), torch.ones(4))
    out = reader(images, query, context, noise)
    assert out.shape == (4, 7)
    # permuting the initial slots permutes the slots, which the attention's weighted sum ignores
    assert torch.allclose(reader(images, query, context, noise[:, [2, 0, 1]]), out, atol=1e-5)


def test_global_reader_answers_from_the_pooled_image_and_the_query():
    torch.manual_seed(0)
    reader = GlobalReader(16, query_dim=5, answers=7, channels=8, dim=16, width=16)
    images = torch.rand(4, 3, 16, 16)
    out = reader(images, torch.eye(5)[:4])
    assert out.shape == (4, 7)
    assert not torch.allclose(out, reader(images, torch.eye(5)[1:5]))
