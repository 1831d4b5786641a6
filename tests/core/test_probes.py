import numpy as np
import pytest
import torch
from scipy.sparse.linalg import cg
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score

import bindbench
from bindbench.core.probes import (
    capture,
    logistic_fit,
    matched_slots,
    probe,
    r2_per_target,
    ridge_fit,
    ridge_fit_cg,
)
from bindbench.models import MLP


@pytest.mark.parametrize("n, d", [(200, 12), (15, 40)])  # primal and dual forms
def test_ridge_matches_sklearn_ridge_with_intercept(n, d):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, 3)) + 2.0
    weights, bias = ridge_fit(torch.from_numpy(x), torch.from_numpy(y), alpha=1.0)
    reference = Ridge(alpha=1.0, fit_intercept=True).fit(x, y)
    np.testing.assert_allclose(weights.numpy().T, reference.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(bias.numpy(), reference.intercept_, rtol=1e-8, atol=1e-10)


def _textbook_cg(a: np.ndarray, b: np.ndarray, iterations: int) -> np.ndarray:
    x = np.zeros_like(b)
    r = b - a @ x
    p = r.copy()
    for _ in range(iterations):
        step = (r @ r) / (p @ a @ p)
        x = x + step * p
        r_new = r - step * (a @ p)
        p = r_new + (r_new @ r_new) / (r @ r) * p
        r = r_new
    return x


def _augmented(x: np.ndarray) -> np.ndarray:
    return np.column_stack([x, np.all(x != 0, axis=1)])


def test_cg10_probe_equals_ten_textbook_cg_steps_and_scipy_cg():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 25)) * np.linspace(0.1, 3, 25)  # uneven scales: 10 steps do not converge
    y = rng.normal(size=(40, 2)) + 1.0
    weights, bias = ridge_fit_cg(torch.from_numpy(x), torch.from_numpy(y), alpha=1.0, iterations=10)
    assert weights.dtype == torch.float32
    ours = np.vstack([weights.numpy(), bias.numpy()[None]])
    xa = _augmented(x)
    a = xa.T @ xa + np.eye(xa.shape[1])
    exact = np.linalg.solve(a, xa.T @ y)
    for t in range(y.shape[1]):
        hand = _textbook_cg(a, xa.T @ y[:, t], 10)
        np.testing.assert_allclose(ours[:, t], hand, rtol=1e-3, atol=1e-4)
        scipy_cg, _ = cg(a, xa.T @ y[:, t], x0=np.zeros(26), maxiter=10, rtol=1e-5, atol=0.0)
        np.testing.assert_allclose(ours[:, t], scipy_cg, rtol=1e-3, atol=1e-4)
        assert np.abs(hand - exact[:, t]).max() > 1e-2  # the check is not vacuous


def test_cg_probe_at_many_iterations_is_ridge_with_a_penalized_intercept():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(60, 3)) + 2.0
    weights, bias = ridge_fit_cg(torch.from_numpy(x), torch.from_numpy(y), iterations=200, tol=0.0)
    reference = Ridge(alpha=1.0, fit_intercept=False).fit(_augmented(x), y)
    np.testing.assert_allclose(weights.numpy().T, reference.coef_[:, :-1], atol=1e-4)
    np.testing.assert_allclose(bias.numpy(), reference.coef_[:, -1], atol=1e-4)
    exact, _ = ridge_fit(torch.from_numpy(x), torch.from_numpy(y))
    assert np.abs(weights.numpy() - exact.numpy()).max() < 0.05  # close to the unpenalized intercept


def test_cg_probe_has_no_intercept_on_sparse_inputs():
    x = torch.eye(6).repeat(5, 1)  # one-hot rows: every row has a zero
    y = torch.arange(30.0)[:, None] % 6 + 3.0
    _, bias = ridge_fit_cg(x, y)
    assert bias.item() == 0.0


def test_r2_per_target_matches_sklearn_including_constant_targets():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(30, 3))
    y[:, 2] = 0.5  # constant: sklearn scores 1 if predicted exactly, else 0
    pred = y + 0.3 * rng.normal(size=y.shape)
    ours = r2_per_target(torch.from_numpy(y), torch.from_numpy(pred)).numpy()
    np.testing.assert_allclose(ours, r2_score(y, pred, multioutput="raw_values"), atol=1e-12)


def test_logistic_probe_matches_sklearn_logistic_regression():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, 5))
    labels = (x @ rng.normal(size=(5, 3))).argmax(1)
    weights, bias = logistic_fit(torch.from_numpy(x), torch.from_numpy(labels))
    reference = LogisticRegression(C=1.0, max_iter=1000, tol=1e-10).fit(x, labels)
    ours = torch.softmax(torch.from_numpy(x) @ weights + bias, 1).numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(x), atol=1e-4)


def test_capture_takes_every_linear_layer_by_default_and_named_layers_on_request():
    model = MLP(4, 2, width=5, depth=2)
    x = torch.randn(7, 4)
    acts = capture(model, x)
    assert list(acts) == ["hidden.0", "hidden.1", "readout"]
    torch.testing.assert_close(acts["hidden.0"], model.hidden[0](x))  # pre-activation
    assert list(capture(model, x, ["readout"])) == ["readout"]
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        capture(model, x, ["nope"])


def test_probes_work_on_a_cnn_and_find_a_planted_linear_code():
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 6),
    )
    images = torch.randn(400, 1, 8, 8)
    targets = images[:, 0, 2, 3:5].clone()  # pixel values: linear in the input, so in the conv output
    scores = bindbench.probe(cnn, images, targets, layers=["0", "3"])
    assert set(scores) == {"input", "0", "3"}
    assert scores["input"]["test"] > 0.99 and scores["0"]["test"] > 0.95
    noise = bindbench.probe(cnn, images, torch.randn(400, 2), layers=["0"])
    assert noise["0"]["test"] < 0.1


def test_probe_scores_ood_with_the_probe_fitted_in_distribution():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16))
    x, x_ood = torch.randn(300, 3), 5 + torch.randn(100, 3)
    scores = probe(model, x, x[:, :2], ood_inputs=x_ood, ood_targets=x_ood[:, :2])
    assert scores["0"]["test"] > 0.99 and scores["0"]["ood"] > 0.99


def test_probe_runs_in_eval_mode_leaves_buffers_and_modes_alone_and_repeats_itself():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 32), torch.nn.BatchNorm1d(32), torch.nn.Dropout(0.5), torch.nn.Linear(32, 2)
    )
    model.train()
    model[2].eval()  # a mixed state, restored module by module
    x = torch.randn(400, 4)
    z = x[:, :2] + 0.1 * torch.randn(400, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = probe(model, x, z, layers=["2"])["2"]["test"]
    second = probe(model, x, z, layers=["2"])["2"]["test"]
    assert first == second
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running stats kept
    assert [m.training for m in model] == [True, True, False, True]


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(3, 8), torch.nn.Linear(2, 8)
        self.out = torch.nn.Linear(8, 1)

    def forward(self, left, right):
        return self.out(torch.tanh(self.a(left) + self.b(right)))


def test_probe_takes_several_inputs_as_a_tuple_or_a_dict_and_probes_them_side_by_side():
    torch.manual_seed(0)
    model = TwoInputs()
    left, right = torch.randn(300, 3), torch.randn(300, 2)
    target = torch.stack([left[:, 0], right[:, 1]], 1)  # one column from each input
    as_tuple = probe(model, (left, right), target, layers=["a", "b"])
    as_dict = probe(model, {"left": left, "right": right}, target, layers=["a", "b"])
    assert as_tuple == as_dict
    assert as_tuple["input"]["test"] > 0.99  # needs both inputs: they are probed together
    assert 0.3 < as_tuple["a"]["test"] < 0.7  # "a" holds the left input's column only
    with pytest.raises(ValueError, match="same number of samples"):
        probe(model, (left, right[:10]), target)


def test_probe_reads_an_lstm_layer_at_its_output_sequence_or_at_what_select_takes():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 16, batch_first=True)
    x = torch.randn(300, 5, 3)
    target = x[:, -1, :2]  # the last step's input: in the output at the last position
    wrapper = LastStep(lstm)
    scores = probe(wrapper, x, target, layers=["rnn"], include_input=False)["rnn"]["test"]
    assert scores > 0.5  # an untrained LSTM, squashed by tanh, still carries its last input
    last = probe(wrapper, x, target, layers=["rnn"], include_input=False, select=lambda n, out: out[1][0][0])
    assert last["rnn"]["test"] == pytest.approx(scores, abs=1e-6)  # h_n: the output's last position
    cell = probe(wrapper, x, target, layers=["rnn"], include_input=False, select=lambda n, out: out[1][1][0])
    assert abs(cell["rnn"]["test"] - scores) > 1e-3  # the cell state is another reading
    with pytest.raises(ValueError, match="gave a tuple, not a tensor"):
        probe(wrapper, x, target, layers=["rnn"], select=lambda name, out: out[1])


class LastStep(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0][:, -1]


def test_sorted_inputs_probe_as_shuffled_ones_and_a_given_split_is_used():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh())
    x = torch.randn(1000, 2)
    z = torch.sin(3 * x[:, :1])  # nonlinear: the score depends on which samples fit
    order = torch.argsort(x[:, 0])
    shuffled = probe(model, x, z, layers=["1"])["1"]["test"]
    ordered = probe(model, x[order], z[order], layers=["1"])["1"]["test"]
    assert abs(shuffled - ordered) < 0.05
    halves = (torch.arange(500), torch.arange(500, 1000))  # the old first-half split on sorted inputs
    extrapolated = probe(model, x[order], z[order], layers=["1"], split=halves)["1"]["test"]
    assert extrapolated < shuffled - 0.2


def synthetic_slots(batch: int, generator: torch.Generator):
    """Scenes of 3 objects in 4 slots, where slot perm[k] holds object k: its mask exactly and
    a code of its colour (of 5) and shape (of 4), plus noise; the fourth slot is empty."""
    objects, slots, side = 3, 4, 8
    colour = torch.randint(5, (batch, objects), generator=generator)
    shape = torch.randint(4, (batch, objects), generator=generator)
    true = torch.zeros(batch, objects, side, side, dtype=torch.bool)
    for k in range(objects):  # object k fills columns 2k, 2k+1
        true[:, k, :, 2 * k : 2 * k + 2] = True
    perm = torch.stack([torch.randperm(slots, generator=generator) for _ in range(batch)])
    code = torch.cat(
        [torch.nn.functional.one_hot(colour, 5), torch.nn.functional.one_hot(shape, 4)], -1
    ).float() + 0.05 * torch.randn(batch, objects, 9, generator=generator)
    features = torch.zeros(batch, slots, 9)
    masks = torch.zeros(batch, slots, side, side, dtype=torch.bool)
    rows = torch.arange(batch)
    for k in range(objects):
        features[rows, perm[:, k]] = code[:, k]
        masks[rows, perm[:, k]] = true[:, k]
    masks[rows, perm[:, objects]] = ~true.any(1)  # the background slot
    return features, masks, true, colour, shape, perm


def test_matched_slots_recover_a_known_permutation_of_slots():
    features, masks, true, _, _, perm = synthetic_slots(50, torch.Generator().manual_seed(0))
    matched, found = matched_slots(features, masks, true)
    assert found.all()
    rows = torch.arange(50)[:, None]
    assert torch.equal(matched, features[rows, perm[:, :3]])
    # an object marked invalid finds no slot
    valid = torch.ones(50, 3, dtype=torch.bool)
    valid[:, 1] = False
    _, found = matched_slots(features, masks, true, valid)
    assert torch.equal(found, valid)


def test_a_linear_probe_on_matched_synthetic_slots_reads_every_attribute():
    generator = torch.Generator().manual_seed(1)
    fit = synthetic_slots(200, generator)
    test = synthetic_slots(200, generator)
    x, found = matched_slots(*fit[:3])
    for index, classes in ((3, 5), (4, 4)):  # colour, shape
        weights, bias = logistic_fit(x[found], fit[index][found], classes)
        tx, tfound = matched_slots(*test[:3])
        predicted = (tx[tfound].double() @ weights + bias).argmax(1)
        assert torch.equal(predicted, test[index][tfound])


def test_weighted_f1_matches_sklearn_even_with_classes_never_predicted():
    from sklearn.metrics import f1_score

    from bindbench.core.probes import weighted_f1

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 300)
    predicted = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 4, 300))  # class 4 never said
    ours = weighted_f1(torch.from_numpy(labels), torch.from_numpy(predicted), 6)
    assert ours == pytest.approx(f1_score(labels, predicted, average="weighted"), abs=1e-12)


def test_a_planted_linear_code_of_concepts_is_decoded_exactly_and_noise_at_chance():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from bindbench.core.probes import concept_probe

    gen = torch.Generator().manual_seed(0)
    sizes = (3, 8, 4)
    values = torch.stack([torch.randint(k, (2000,), generator=gen) for k in sizes], 1)
    hot = torch.cat([torch.nn.functional.one_hot(values[:, i], k) for i, k in enumerate(sizes)], 1).double()
    mixing = torch.randn(hot.shape[1], 32, generator=gen, dtype=torch.float64)
    code = hot @ mixing * 50 + 7  # a linear code, scaled and shifted: standardization undoes it
    planted = concept_probe(code[:1000], values[:1000], code[1000:], values[1000:], sizes)
    assert planted["exact_match"] == 1.0 and planted["mean_f1"] == 1.0
    noise = torch.randn(2000, 32, generator=gen, dtype=torch.float64)
    chance = concept_probe(noise[:1000], values[:1000], noise[1000:], values[1000:], sizes)
    assert chance["accuracy"] == pytest.approx([1 / 3, 1 / 8, 1 / 4], abs=0.05)
    assert chance["exact_match"] < 0.03 and chance["log_loss"].mean() > planted["log_loss"].mean() + 3
    # the per-row log-loss is scikit-learn's on standardized features
    scaler = StandardScaler().fit(noise[:1000].numpy())
    ours = torch.zeros(1000, dtype=torch.float64)
    for i in range(3):
        reference = LogisticRegression(C=1.0, max_iter=2000, tol=1e-10)
        reference.fit(scaler.transform(noise[:1000].numpy()), values[:1000, i].numpy())
        p = reference.predict_proba(scaler.transform(noise[1000:].numpy()))
        ours -= torch.from_numpy(np.log(p[np.arange(1000), values[1000:, i].numpy()]))
    np.testing.assert_allclose(chance["log_loss"].numpy(), ours.numpy(), atol=1e-3)
