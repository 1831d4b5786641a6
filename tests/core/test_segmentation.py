import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from bindbench.core.segmentation import (
    ari,
    fg_ari,
    match_masks,
    mean_best_overlap,
    mean_fg_ari,
    mean_iou,
    one_hot_masks,
    pairwise_iou,
    segmentation_scores,
)


def _random_label_maps(gen: torch.Generator, b: int, h: int, w: int, k: int) -> torch.Tensor:
    return torch.randint(0, k, (b, h, w), generator=gen)


def test_ari_matches_sklearn_on_random_label_maps_with_varied_cluster_counts():
    gen = torch.Generator().manual_seed(0)
    for trial in range(60):
        h, w = int(torch.randint(1, 9, (1,), generator=gen)), int(torch.randint(1, 9, (1,), generator=gen))
        kt, kp = 1 + trial % 7, 1 + (trial // 7) % 9
        true = _random_label_maps(gen, 3, h, w, kt)
        pred = _random_label_maps(gen, 3, h, w, kp)
        scores = ari(true, pred)
        assert scores.shape == (3,)
        for image in range(3):
            expected = adjusted_rand_score(true[image].flatten().numpy(), pred[image].flatten().numpy())
            assert abs(float(scores[image]) - expected) < 1e-6, (trial, image)


def test_ari_special_cases_agree_with_sklearn():
    n = 30
    one = torch.zeros(1, n, dtype=torch.long)
    distinct = torch.arange(n).unsqueeze(0)
    half = (torch.arange(n) % 2).unsqueeze(0)
    cases = [
        (one, one),  # both a single cluster: sklearn's 1.0
        (distinct, distinct * 3 + 5),  # both all singletons: sklearn's 1.0
        (one, distinct),  # 0 / 0 avoided: sklearn gives 0.0
        (distinct, one),
        (half, one),
        (one, half),
        (half, 1 - half),  # identical up to relabelling
        (torch.tensor([[4]]), torch.tensor([[9]])),  # a single pixel
        (torch.tensor([[0, 1]]), torch.tensor([[0, 0]])),
    ]
    for true, pred in cases:
        expected = adjusted_rand_score(true.flatten().numpy(), pred.flatten().numpy())
        assert abs(float(ari(true, pred)[0]) - expected) < 1e-6, (true, pred, expected)
    assert float(ari(one, one)[0]) == 1.0
    assert float(ari(distinct, distinct)[0]) == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6)), min_size=1, max_size=40),
)
def test_ari_matches_sklearn_on_arbitrary_labellings(pairs):
    true = torch.tensor([[t for t, _ in pairs]])
    pred = torch.tensor([[p for _, p in pairs]])
    expected = adjusted_rand_score(true[0].numpy(), pred[0].numpy())
    assert abs(float(ari(true, pred)[0]) - expected) < 1e-6


def test_fg_ari_is_sklearn_ari_on_foreground_pixels_and_nan_without_foreground():
    gen = torch.Generator().manual_seed(1)
    true = _random_label_maps(gen, 6, 10, 10, 4)  # label 0 is background
    pred = _random_label_maps(gen, 6, 10, 10, 5)
    true[5] = 0  # an image with no foreground
    scores = fg_ari(true, pred)
    for image in range(5):
        t, p = true[image].flatten().numpy(), pred[image].flatten().numpy()
        foreground = t != 0
        expected = adjusted_rand_score(t[foreground], p[foreground])
        assert abs(float(scores[image]) - expected) < 1e-6
    assert math.isnan(float(scores[5]))
    assert not math.isnan(float(ari(true, pred)[5]))
    assert abs(float(mean_fg_ari(true, pred)) - float(scores[:5].mean())) < 1e-6


def test_fg_ari_ignores_how_the_background_is_segmented():
    true = torch.tensor([[0, 0, 0, 1, 1, 2, 2]])
    good = torch.tensor([[5, 6, 7, 1, 1, 2, 2]])
    assert float(fg_ari(true, good)[0]) == 1.0
    assert float(ari(true, good)[0]) < 1.0


def test_permuting_predicted_labels_leaves_ari_unchanged():
    gen = torch.Generator().manual_seed(2)
    true = _random_label_maps(gen, 4, 12, 12, 5)
    pred = _random_label_maps(gen, 4, 12, 12, 6)
    relabel = torch.randperm(6, generator=gen) * 11 + 3  # a permutation onto other label values
    for ignore_background in (False, True):
        before = ari(true, pred, ignore_background)
        after = ari(true, relabel[pred], ignore_background)
        assert torch.allclose(before, after, atol=1e-7)


def test_a_batch_scores_the_same_as_its_images_one_by_one():
    gen = torch.Generator().manual_seed(3)
    true = _random_label_maps(gen, 5, 9, 7, 4)
    pred = _random_label_maps(gen, 5, 9, 7, 3)
    pred[2] = 42  # label values seen in one image only
    true[4] = 0
    for ignore_background in (False, True):
        batch = ari(true, pred, ignore_background)
        single = torch.cat([ari(true[i : i + 1], pred[i : i + 1], ignore_background) for i in range(5)])
        assert torch.allclose(batch, single, atol=1e-7, equal_nan=True)
    assert torch.allclose(ari(true, pred), ari(true.flatten(1), pred.flatten(1)))


def test_ari_rejects_mismatched_shapes_and_float_labels():
    with pytest.raises(ValueError, match="must match"):
        ari(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        ari(torch.zeros(2, 3), torch.zeros(2, 3))


def test_one_hot_masks_marks_each_label_in_its_own_channel():
    labels = torch.tensor([[[0, 2], [2, 1]]])  # (1, 2, 2)
    masks = one_hot_masks(labels, 4)
    assert masks.shape == (1, 4, 2, 2) and masks.dtype == torch.bool
    assert torch.equal(masks, torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).bool())
    assert not masks[0, 3].any()
    assert torch.equal(masks.sum(dim=1), torch.ones(1, 2, 2, dtype=torch.long))


def _object_masks(gen: torch.Generator, b: int, k: int, h: int, w: int) -> torch.Tensor:
    """Returns k disjoint non-empty masks per image (b, k, h, w) from a random label map."""
    labels = _random_label_maps(gen, b, h, w, k)
    labels[:, 0, :k] = torch.arange(k)  # every object has a pixel
    return one_hot_masks(labels, k)


def test_hungarian_matching_recovers_a_permutation_of_the_true_masks():
    gen = torch.Generator().manual_seed(4)
    b, k, extra = 3, 5, 2
    true = _object_masks(gen, b, k, 8, 8)
    perms = torch.stack([torch.randperm(k, generator=gen) for _ in range(b)])  # (b, k)
    permuted = torch.stack([true[i, perms[i]] for i in range(b)])  # pred slot j holds true object perms[i, j]
    pred = torch.cat([permuted, torch.zeros(b, extra, 8, 8, dtype=torch.bool)], dim=1)  # empty slots too
    matched = match_masks(true, pred)
    assert matched.shape == (b, k)
    for i in range(b):
        assert torch.equal(perms[i, matched[i]], torch.arange(k))  # the matching inverts the permutation
    assert torch.allclose(mean_iou(true, pred), torch.ones(b))


def _numpy_iou(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    cost = np.zeros((len(true), len(pred)))
    for i, t in enumerate(true):
        for j, p in enumerate(pred):
            union = np.logical_or(t, p).sum()
            cost[i, j] = np.logical_and(t, p).sum() / union if union else 0.0
    return cost


def test_matching_reaches_scipys_optimal_total_iou_on_overlapping_masks():
    gen = torch.Generator().manual_seed(5)
    true = torch.rand(4, 4, 6, 6, generator=gen) < 0.4  # overlapping, random masks
    pred = torch.rand(4, 6, 6, 6, generator=gen) < 0.5
    iou = pairwise_iou(true, pred)
    matched = match_masks(true, pred)
    for i in range(4):
        reference = _numpy_iou(true[i].numpy(), pred[i].numpy())
        assert np.allclose(iou[i].numpy(), reference, atol=1e-6)
        rows, cols = linear_sum_assignment(reference, maximize=True)
        ours = sum(reference[r, int(matched[i, r])] for r in range(4))
        assert abs(ours - reference[rows, cols].sum()) < 1e-6
        assert len(set(matched[i].tolist())) == 4  # one predicted mask per object


def _two_halves() -> torch.Tensor:
    """Returns true masks (1, 2, 4, 4): object A the left half, object B the right half."""
    true = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    true[0, 0, :, :2] = True
    true[0, 1, :, 2:] = True
    return true


def test_miou_and_mbo_by_hand_when_a_slot_covers_half_an_object():
    true = _two_halves()
    pred = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    pred[0, 0, :2, :2] = True  # the top half of A: IoU(A) = 4 / 8
    pred[0, 1] = ~pred[0, 0]  # the rest: IoU(A) = 4 / 16, IoU(B) = 8 / 12
    assert torch.allclose(pairwise_iou(true, pred), torch.tensor([[[0.5, 0.25], [0.0, 2 / 3]]]))
    assert torch.equal(match_masks(true, pred), torch.tensor([[0, 1]]))
    assert abs(float(mean_iou(true, pred)[0]) - (0.5 + 2 / 3) / 2) < 1e-6
    assert abs(float(mean_best_overlap(true, pred)[0]) - (0.5 + 2 / 3) / 2) < 1e-6


def test_mbo_lets_two_objects_share_a_slot_but_miou_does_not():
    true = _two_halves()
    pred = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    pred[0, 0] = True  # one slot takes the whole image: IoU 8 / 16 with each object
    assert abs(float(mean_best_overlap(true, pred)[0]) - 0.5) < 1e-6
    assert abs(float(mean_iou(true, pred)[0]) - 0.25) < 1e-6  # the other object gets an empty slot


def test_padded_empty_true_masks_are_left_out_and_valid_overrides():
    true = _two_halves()
    pred = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    pred[0, 0, :2, :2] = True
    pred[0, 1] = ~pred[0, 0]
    padded = torch.cat([true, torch.zeros(1, 2, 4, 4, dtype=torch.bool)], dim=1)  # (1, 4, 4, 4)
    assert torch.equal(match_masks(padded, pred), torch.tensor([[0, 1, -1, -1]]))
    assert torch.allclose(mean_iou(padded, pred), mean_iou(true, pred))
    assert torch.allclose(mean_best_overlap(padded, pred), mean_best_overlap(true, pred))
    only_a = torch.tensor([[True, False, False, False]])
    assert abs(float(mean_iou(padded, pred, valid=only_a)[0]) - 0.5) < 1e-6
    assert torch.equal(match_masks(padded, pred, valid=only_a), torch.tensor([[0, -1, -1, -1]]))
    empty = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    assert math.isnan(float(mean_iou(empty, pred)[0]))
    assert math.isnan(float(mean_best_overlap(empty, pred)[0]))


def test_objects_beyond_the_number_of_slots_score_zero_in_miou():
    gen = torch.Generator().manual_seed(6)
    true = _object_masks(gen, 2, 4, 6, 6)
    pred = true[:, :2]  # two slots for four objects, each a perfect copy
    matched = match_masks(true, pred)
    assert torch.equal((matched >= 0).sum(dim=1), torch.tensor([2, 2]))
    assert torch.allclose(mean_iou(true, pred), torch.full((2,), 0.5))


def test_mask_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="batch and pixel"):
        mean_iou(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="valid"):
        match_masks(
            torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), valid=torch.ones(2, 2, dtype=torch.bool)
        )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    k_true=st.integers(1, 5),
    k_pred=st.integers(1, 6),
    size=st.integers(2, 8),
    disjoint=st.booleans(),
)
def test_mbo_is_never_below_miou(seed, k_true, k_pred, size, disjoint):
    gen = torch.Generator().manual_seed(seed)
    if disjoint:  # segmentations, as a model's argmax gives
        true = one_hot_masks(_random_label_maps(gen, 3, size, size, k_true), k_true)
        pred = one_hot_masks(_random_label_maps(gen, 3, size, size, k_pred), k_pred)
    else:
        true = torch.rand(3, k_true, size, size, generator=gen) < 0.3
        pred = torch.rand(3, k_pred, size, size, generator=gen) < 0.3
    miou, mbo = mean_iou(true, pred), mean_best_overlap(true, pred)
    both = ~torch.isnan(miou)
    assert torch.equal(both, ~torch.isnan(mbo))
    assert bool((mbo[both] >= miou[both] - 1e-6).all())
    assert bool(((miou[both] >= 0) & (mbo[both] <= 1 + 1e-6)).all())


def test_segmentation_scores_of_label_maps_by_hand():
    # 1 x 4 image: background, object 1 twice, object 2; the prediction merges both objects in slot 3
    true = torch.tensor([[[0, 1, 1, 2]]])
    merged = segmentation_scores(true, torch.tensor([[[0, 3, 3, 3]]]), num_objects=2, num_slots=4)
    perfect = segmentation_scores(true, torch.tensor([[[2, 0, 0, 1]]]), num_objects=2, num_slots=4)
    assert {k: v.item() for k, v in perfect.items()} == {"fg_ari": 1.0, "ari": 1.0, "mbo": 1.0, "miou": 1.0}
    assert merged["fg_ari"].item() == 0.0  # every foreground pixel in one cluster
    assert math.isclose(merged["ari"].item(), adjusted_rand_score([0, 1, 1, 2], [0, 3, 3, 3]), rel_tol=1e-6)
    assert math.isclose(merged["mbo"].item(), (2 / 3 + 1 / 3) / 2, rel_tol=1e-6)  # slot 3 vs each object
    assert math.isclose(merged["miou"].item(), (2 / 3 + 0) / 2, rel_tol=1e-6)  # one object is left unmatched


def test_kmeans_on_colour_segments_flat_colour_scenes_exactly_and_is_seeded():
    from bindbench.core.segmentation import kmeans_segmentation

    labels = torch.zeros(2, 12, 12, dtype=torch.long)
    labels[:, 2:6, 2:6], labels[:, 7:11, 3:9], labels[1, 0:3, 8:12] = 1, 2, 3
    colours = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.4, 1.0]])
    images = colours[labels].permute(0, 3, 1, 2)
    pred = kmeans_segmentation(images, 4)
    assert fg_ari(labels, pred).tolist() == [1.0, 1.0]
    assert adjusted_rand_score(labels[1].flatten(), pred[1].flatten()) == 1.0
    assert torch.equal(pred, kmeans_segmentation(images, 4))
    # colour alone cannot split two objects of one colour; with position the clusters are regions
    two = torch.zeros(1, 12, 12, dtype=torch.long)
    two[0, 0:4, 0:4], two[0, 8:12, 8:12] = 1, 2
    red = colours[(two > 0).long()].permute(0, 3, 1, 2)
    assert fg_ari(two, kmeans_segmentation(red, 3)).item() == 0.0
    regions = kmeans_segmentation(red, 3, position=True)
    assert sorted(regions.unique().tolist()) == [0, 1, 2] and not torch.equal(
        regions, kmeans_segmentation(red, 3)
    )


def test_slot_of_object_matches_each_object_to_the_slot_that_covers_it():
    from bindbench.core.segmentation import slot_of_object

    true = torch.tensor([[[0, 1, 1, 2], [0, 1, 1, 2]]])  # (1, 2, 4): objects 1 and 2
    pred = torch.tensor([[[3, 0, 0, 1], [3, 0, 0, 1]]])  # slot 0 covers object 1, slot 1 object 2
    assert slot_of_object(true, pred, 3, 4).tolist() == [[0, 1, -1]]  # object 3 is absent
