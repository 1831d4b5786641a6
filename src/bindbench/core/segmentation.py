"""Object-discovery metrics: ARI and FG-ARI on label maps, mIoU and mBO on masks.

Everything is batched over images. Label maps are integer tensors of shape (b, h, w) or
(b, n); masks are tensors of shape (b, k, h, w) or (b, k, n). Axes: b batch, k object or
slot, n pixel. The only Python loop is over images, for the Hungarian step of `mean_iou`
and `match_masks` (scipy's `linear_sum_assignment`).

Conventions, in the words of the object-centric literature:
- ARI compares two partitions of the pixels, Hubert & Arabie's adjusted Rand index. It
  agrees with `sklearn.metrics.adjusted_rand_score`, including its special case: two
  identical partitions (all pixels in one group, every pixel its own group, or a single
  pixel) score exactly 1.0. One departure: an image with no pixels to score gives NaN,
  where sklearn gives 1.0 for empty input.
- FG-ARI is ARI on the pixels whose true label is not 0 (the background), as in the Slot
  Attention paper's tables. An image without foreground pixels therefore gives NaN, and
  `mean_fg_ari` skips such images.
- mIoU and mBO score true objects only: pass the true masks without the background. A
  true mask with no pixels is padding (scenes have varying numbers of objects) and is
  left out of the averages unless `valid` says otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.cluster.vq import kmeans2
from scipy.optimize import linear_sum_assignment

from bindbench.core.metrics import mutual_information


def _check_label_maps(true_labels: torch.Tensor, pred_labels: torch.Tensor) -> None:
    if true_labels.shape != pred_labels.shape:
        raise ValueError(
            f"true_masks has shape {tuple(true_labels.shape)} but pred_masks has shape "
            f"{tuple(pred_labels.shape)}; they must match"
        )
    if true_labels.dim() < 2:
        raise ValueError(f"label maps of shape {tuple(true_labels.shape)} must be (b, h, w) or (b, n)")
    for name, labels in (("true_masks", true_labels), ("pred_masks", pred_labels)):
        if labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"{name} has dtype {labels.dtype}; ARI needs integer label maps")


def _pairs(count: torch.Tensor) -> torch.Tensor:
    """Returns count choose 2, elementwise, for an int64 tensor."""
    return count * (count - 1) // 2


def ari(true_masks: torch.Tensor, pred_masks: torch.Tensor, ignore_background: bool = False) -> torch.Tensor:
    """Returns the adjusted Rand index of each image, a float tensor of shape (b,).

    `true_masks` and `pred_masks` are integer label maps of shape (b, h, w) or (b, n): one
    group id per pixel (for a model, the argmax over slots). Label values are arbitrary;
    only which pixels share a label matters. With `ignore_background=True` the pixels
    whose true label is 0 are left out, which gives FG-ARI.

    Special cases follow `sklearn.metrics.adjusted_rand_score`: when the two partitions of
    an image are identical, ARI is 1.0, which covers the cases where the formula is 0 / 0
    (both partitions a single group, both all singletons, a single pixel). An image with
    no pixels left to score (FG-ARI on an image that is all background) gives NaN.
    """
    _check_label_maps(true_masks, pred_masks)
    b = true_masks.shape[0]
    true_labels = true_masks.reshape(b, -1)  # (b, n)
    pred_labels = pred_masks.reshape(b, -1)  # (b, n)

    # Relabel to 0..kt-1 and 0..kp-1 (over the whole batch) so the table stays small
    # whatever the label values are.
    true_values, true_ids = torch.unique(true_labels, return_inverse=True)  # (b, n)
    pred_values, pred_ids = torch.unique(pred_labels, return_inverse=True)  # (b, n)
    kt, kp = max(true_values.numel(), 1), max(pred_values.numel(), 1)

    # Contingency table (b, kt, kp): pixels with true group i and predicted group j.
    # Left-out pixels go to one extra bin that is dropped.
    image = torch.arange(b, device=true_labels.device).unsqueeze(1)  # (b, 1)
    cell = (image * kt + true_ids) * kp + pred_ids  # (b, n)
    if ignore_background:
        cell = torch.where(true_labels != 0, cell, b * kt * kp)
    table = torch.bincount(cell.flatten(), minlength=b * kt * kp + 1)[:-1].view(b, kt, kp)

    num_pixels = table.sum(dim=(1, 2))  # (b,)
    # Pairs of pixels grouped together by both, by the truth, and by the prediction.
    index = _pairs(table).sum(dim=(1, 2))  # (b,)
    true_pairs = _pairs(table.sum(dim=2)).sum(dim=1)  # (b,)
    pred_pairs = _pairs(table.sum(dim=1)).sum(dim=1)  # (b,)
    all_pairs = _pairs(num_pixels)  # (b,)

    # The counts are exact integers; only the final ratio is taken in float64.
    expected = true_pairs.double() * pred_pairs.double() / all_pairs.clamp_min(1).double()
    maximum = (true_pairs + pred_pairs).double() / 2
    score = (index.double() - expected) / (maximum - expected)
    # Identical partitions: every pair together in one is together in the other.
    identical = (index == true_pairs) & (index == pred_pairs)
    score = torch.where(identical, torch.ones_like(score), score)
    score = torch.where(num_pixels == 0, torch.full_like(score, float("nan")), score)
    return score.to(torch.get_default_dtype())


def fg_ari(true_masks: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """Returns FG-ARI of each image, shape (b,): ARI on pixels whose true label is not 0.

    NaN for an image without foreground pixels; `mean_fg_ari` skips those.
    """
    return ari(true_masks, pred_masks, ignore_background=True)


def mean_fg_ari(true_masks: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """Returns FG-ARI averaged over the images that have foreground pixels (a 0-dim tensor).

    NaN only when no image of the batch has a foreground pixel.
    """
    return torch.nanmean(fg_ari(true_masks, pred_masks))


def one_hot_masks(labels: torch.Tensor, num: int) -> torch.Tensor:
    """Returns boolean masks of shape (b, num, ...) from a label map of shape (b, ...).

    Mask k is True where the label is k. Labels must lie in [0, num); for model output,
    pass the argmax over slots and `num` = number of slots.
    """
    if num < 1:
        raise ValueError(f"num={num} must be at least 1")
    if labels.is_floating_point() or labels.is_complex() or labels.dim() < 2:
        raise ValueError(
            f"labels must be an integer tensor of shape (b, h, w) or (b, n), "
            f"got dtype {labels.dtype} and shape {tuple(labels.shape)}"
        )
    classes = torch.arange(num, device=labels.device).view(1, num, *([1] * (labels.dim() - 1)))
    return labels.unsqueeze(1) == classes  # (b, num, ...)


def _check_masks(true_masks: torch.Tensor, pred_masks: torch.Tensor, valid: torch.Tensor | None) -> None:
    if true_masks.dim() < 3 or pred_masks.dim() != true_masks.dim():
        raise ValueError(
            f"true_masks {tuple(true_masks.shape)} and pred_masks {tuple(pred_masks.shape)} "
            f"must both be (b, k, h, w) or (b, k, n)"
        )
    if true_masks.shape[0] != pred_masks.shape[0] or true_masks.shape[2:] != pred_masks.shape[2:]:
        raise ValueError(
            f"true_masks {tuple(true_masks.shape)} and pred_masks {tuple(pred_masks.shape)} "
            f"must agree on the batch and pixel axes"
        )
    if pred_masks.shape[1] < 1:
        raise ValueError("pred_masks has no masks (k_pred = 0); at least one is needed")
    if valid is not None and tuple(valid.shape) != tuple(true_masks.shape[:2]):
        raise ValueError(
            f"valid has shape {tuple(valid.shape)}; it must be (b, k_true) = {tuple(true_masks.shape[:2])}"
        )


def pairwise_iou(true_masks: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """Returns the IoU of every true mask with every predicted mask, shape (b, k_true, k_pred).

    Masks are (b, k, h, w) or (b, k, n), boolean or 0/1 floats (soft masks in [0, 1] give the
    product soft IoU; threshold or argmax them first for the standard metric). Two empty
    masks have IoU 0.
    """
    true = true_masks.flatten(2).float()  # (b, kt, n)
    pred = pred_masks.flatten(2).float()  # (b, kp, n)
    intersection = torch.einsum("bin,bjn->bij", true, pred)  # (b, kt, kp)
    union = true.sum(dim=2).unsqueeze(2) + pred.sum(dim=2).unsqueeze(1) - intersection  # (b, kt, kp)
    return torch.where(union > 0, intersection / union.clamp_min(1e-12), torch.zeros_like(union))


def _present(true_masks: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Returns which true objects count, shape (b, k_true): `valid`, or else the non-empty masks."""
    if valid is not None:
        return valid.bool()
    return true_masks.flatten(2).ne(0).any(dim=2)


def _hungarian(iou: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Returns, per true object, the index of its predicted mask or -1, shape (b, k_true).

    The assignment maximizes the total IoU over the present true objects, one predicted
    mask per true object at most.
    """
    iou_host = iou.detach().cpu().double().numpy()  # (b, kt, kp): the one copy to the host
    present_host = present.cpu().numpy()  # (b, kt)
    matched = np.full(present_host.shape, -1, dtype=np.int64)
    for image, (cost, rows_present) in enumerate(zip(-iou_host, present_host)):
        rows = np.flatnonzero(rows_present)
        row_pos, cols = linear_sum_assignment(cost[rows])
        matched[image, rows[row_pos]] = cols
    return torch.from_numpy(matched).to(iou.device)


def match_masks(
    true_masks: torch.Tensor, pred_masks: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Returns the predicted mask matched to each true mask, long tensor (b, k_true), -1 if none.

    Hungarian matching on the pairwise IoU (`pairwise_iou`): for each image, the one-to-one
    assignment of true to predicted masks with the largest total IoU. A true object gets
    -1 when it is absent (an empty, padded mask, or `valid` False there) or when there are
    more present true objects than predicted masks. Absent objects take no predicted mask.
    `valid` (b, k_true), if given, replaces the default "true mask is non-empty".
    """
    _check_masks(true_masks, pred_masks, valid)
    iou = pairwise_iou(true_masks, pred_masks)
    return _hungarian(iou, _present(true_masks, valid))


def mean_iou(
    true_masks: torch.Tensor, pred_masks: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Returns mIoU per image, shape (b,): mean IoU over true objects after Hungarian matching.

    True objects only: pass the true masks without the background (and the predicted masks
    of all slots). An object left without a predicted mask (more objects than slots) counts
    as IoU 0. Absent true masks (empty, or `valid` False) are left out of the mean; an image
    with no true object gives NaN.
    """
    _check_masks(true_masks, pred_masks, valid)
    iou = pairwise_iou(true_masks, pred_masks)  # (b, kt, kp)
    present = _present(true_masks, valid)  # (b, kt)
    matched = _hungarian(iou, present)  # (b, kt)
    matched_iou = iou.gather(2, matched.clamp_min(0).unsqueeze(2)).squeeze(2)  # (b, kt)
    matched_iou = torch.where(matched >= 0, matched_iou, torch.zeros_like(matched_iou))
    return _mean_over_present(matched_iou, present)


def mean_best_overlap(
    true_masks: torch.Tensor, pred_masks: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Returns mBO per image, shape (b,): each true object's best IoU over all predicted masks, averaged.

    No one-to-one constraint: two objects may pick the same predicted mask, so mBO >= mIoU.
    True objects only: pass the true masks without the background. Absent true masks
    (empty, or `valid` False) are left out; an image with no true object gives NaN.
    """
    _check_masks(true_masks, pred_masks, valid)
    best = pairwise_iou(true_masks, pred_masks).amax(dim=2)  # (b, kt)
    return _mean_over_present(best, _present(true_masks, valid))


def _mean_over_present(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Returns the mean of values (b, k) over the present entries of each row, NaN if none."""
    total = torch.where(present, values, torch.zeros_like(values)).sum(dim=1)
    return total / present.sum(dim=1).to(values.dtype)  # 0 / 0 = NaN for an image with no object


def segmentation_scores(
    true_labels: torch.Tensor, pred_labels: torch.Tensor, num_objects: int, num_slots: int
) -> dict[str, torch.Tensor]:
    """FG-ARI, ARI, mBO and mIoU of each scene, tensors (s,); NaN where a score is undefined.

    True objects are the labels 1..num_objects (background left out); predicted masks are the
    one-hot argmax over all slots, the background's slot included."""
    true_masks = one_hot_masks(true_labels, num_objects + 1)[:, 1:]  # (s, objects, h, w)
    pred_masks = one_hot_masks(pred_labels, num_slots)  # (s, k, h, w)
    return {
        "fg_ari": fg_ari(true_labels, pred_labels),
        "ari": ari(true_labels, pred_labels),
        "mbo": mean_best_overlap(true_masks, pred_masks),
        "miou": mean_iou(true_masks, pred_masks),
    }


def kmeans_segmentation(
    images: torch.Tensor, clusters: int, position: bool = False, seed: int = 0
) -> torch.Tensor:
    """Label maps (s, h, w) from k-means on each image's pixels alone: a segmenter with no object
    prior, the floor a benchmark's scenes must keep a model above.

    Each pixel is its colour (c values in [0, 1]), with `position` also its (y, x) in [0, 1];
    scipy's `kmeans2` with k-means++ starts, seeded per image from (seed, image)."""
    s, c, h, w = images.shape
    pixels = images.detach().cpu().double().permute(0, 2, 3, 1).reshape(s, h * w, c).numpy()
    if position:
        y, x = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
        where = np.broadcast_to(np.stack([y, x], -1).reshape(1, h * w, 2), (s, h * w, 2))
        pixels = np.concatenate([pixels, where], axis=2)
    labels = np.empty((s, h * w), dtype=np.int64)
    for i, points in enumerate(pixels):
        distinct, inverse = np.unique(points, axis=0, return_inverse=True)
        if len(distinct) <= clusters:  # every distinct value its own cluster: what k-means reaches
            labels[i] = inverse.reshape(-1)
            continue
        with warnings.catch_warnings():  # an empty cluster keeps its centre; that is fine here
            warnings.simplefilter("ignore", UserWarning)
            _, labels[i] = kmeans2(points, clusters, minit="++", seed=np.random.default_rng([seed, i]))
    return torch.from_numpy(labels).view(s, h, w).to(images.device)


def slot_of_object(true_labels: torch.Tensor, pred_labels: torch.Tensor, num_objects: int, num_slots: int):
    """Each true object's slot, (s, num_objects) long, -1 where the object is absent or found no
    slot: Hungarian matching (`match_masks`) of the objects 1..num_objects of the true label maps
    (s, h, w) to the one-hot predicted label maps (argmax over num_slots slots)."""
    true_masks = one_hot_masks(true_labels, num_objects + 1)[:, 1:]
    return match_masks(true_masks, one_hot_masks(pred_labels, num_slots))


def slot_information(
    true_labels: torch.Tensor,
    pred_labels: torch.Tensor,
    num_slots: int,
    attributes: dict[str, torch.Tensor],
    generator: torch.Generator,
) -> dict[str, float]:
    """How much a slot's index says about the object it wins: for each attribute (s, objects)
    of the objects 1..objects of the true label maps (s, h, w) (-1 where there is no object),
    the mutual information in nats (`core.metrics.mutual_information`) between the slot matched
    to each object (`slot_of_object`) and its attribute, as `slot_<name>_mi`; and the same with
    every scene's slots shuffled by `generator` (CPU), `slot_<name>_mi_shuffled`: the value of
    exchangeable slots, the estimator's upward bias at this many objects."""
    num_objects = next(iter(attributes.values())).shape[1]
    slot = slot_of_object(true_labels, pred_labels, num_objects, num_slots)  # (s, objects)
    order = torch.rand(slot.shape[0], num_slots, generator=generator).argsort(1).to(slot.device)
    shuffled = order.gather(1, slot.clamp(min=0))
    scores = {}
    for name, attribute in attributes.items():
        found = (slot >= 0) & (attribute >= 0)
        scores[f"slot_{name}_mi"] = mutual_information(slot[found], attribute[found])
        scores[f"slot_{name}_mi_shuffled"] = mutual_information(shuffled[found], attribute[found])
    return scores
