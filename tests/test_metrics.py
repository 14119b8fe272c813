import logging
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy.spatial.distance import cdist
from torch.utils.data import DistributedSampler

from cmrseg.metrics import (
    PerSampleHausdorff95,
    PerSampleOverlap,
    hausdorff_distance_95,
    mean_sd,
    overlap_metrics,
    per_sample_confusion,
    scores_from_confusion,
)

NAN = math.nan
SCORES = ["jaccard", "dice", "sensitivity", "specificity", "ppv", "npv"]


def masks(*rows_lists) -> torch.Tensor:
    return torch.tensor(rows_lists, dtype=torch.bool)


# preds/target of one 2x4 image: TP 2, FP 1, FN 2, TN 3
PRED = [[1, 1, 0, 0], [0, 1, 0, 0]]
TARGET = [[1, 0, 0, 0], [1, 1, 1, 0]]
EMPTY = [[0, 0, 0, 0], [0, 0, 0, 0]]
FULL = [[1, 1, 1, 1], [1, 1, 1, 1]]


@pytest.mark.parametrize(
    ("pred", "target", "counts", "expected"),
    [
        (PRED, TARGET, [2, 1, 2, 3], [2 / 5, 4 / 7, 2 / 4, 3 / 4, 2 / 3, 3 / 5]),
        (TARGET, TARGET, [4, 0, 0, 4], [1, 1, 1, 1, 1, 1]),
        (EMPTY, TARGET, [0, 0, 4, 4], [0, 0, 0, 1, NAN, 4 / 8]),
        (PRED, EMPTY, [0, 3, 0, 5], [0, 0, NAN, 5 / 8, 0, 1]),
        (EMPTY, EMPTY, [0, 0, 0, 8], [NAN, NAN, NAN, 1, NAN, 1]),
        (FULL, FULL, [8, 0, 0, 0], [1, 1, 1, NAN, 1, NAN]),
    ],
    ids=["mixed", "perfect", "empty-pred", "empty-target", "both-empty", "both-full"],
)
def test_scores_match_hand_computed_counts(pred, target, counts, expected):
    confusion = per_sample_confusion(masks(pred), masks(target))
    assert confusion.tolist() == [counts]
    scores = scores_from_confusion(confusion)
    got = [scores[name].item() for name in SCORES]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_integer_masks_match_bool_masks():
    confusion = per_sample_confusion(
        masks(PRED, TARGET).to(torch.uint8), masks(TARGET, TARGET).long()
    )
    assert confusion.tolist() == [[2, 1, 2, 3], [4, 0, 0, 4]]


@pytest.mark.parametrize(
    ("preds", "target", "message"),
    [
        (torch.zeros(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool), "threshold or arg-max"),
        (torch.full((2, 4, 4), 2), torch.zeros(2, 4, 4, dtype=torch.long), "only 0 and 1"),
        (
            torch.zeros(2, 4, 4, dtype=torch.bool),
            torch.zeros(2, 4, 5, dtype=torch.bool),
            "one shape",
        ),
        (torch.zeros(4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool), r"\[B, H, W\]"),
    ],
)
def test_bad_masks_refused(preds, target, message):
    with pytest.raises(ValueError, match=message):
        per_sample_confusion(preds, target)


def test_mean_sd_excludes_undefined_samples():
    mean, sd, n_undefined = mean_sd(torch.tensor([0.5, NAN, 0.7, 0.9], dtype=torch.float64))
    assert n_undefined == 1
    assert mean.item() == pytest.approx(0.7)
    assert sd.item() == pytest.approx(0.2)
    mean, sd, n_undefined = mean_sd(torch.tensor([0.5, NAN], dtype=torch.float64))
    assert mean.item() == 0.5 and math.isnan(sd.item()) and n_undefined == 1
    mean, sd, _ = mean_sd(torch.tensor([], dtype=torch.float64))
    assert math.isnan(mean.item()) and math.isnan(sd.item())


def random_batch(n: int, seed: int, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Random blobs: preds are targets with noise; sample 0 has an empty prediction."""
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        r, c = torch.randint(2, size // 2, (2,), generator=g).tolist()
        h, w = torch.randint(4, size // 2, (2,), generator=g).tolist()
        target[i, r : r + h, c : c + w] = True
    preds = target ^ (torch.rand(n, size, size, generator=g) < 0.1)
    preds[0] = False
    return preds, target


def test_metric_reports_per_sample_mean_and_sd_over_batches():
    preds, target = random_batch(7, seed=1)
    metric = PerSampleOverlap("ppv")
    metric.update(preds[:3], target[:3], torch.arange(3))
    metric.update(preds[3:], target[3:], torch.arange(3, 7))
    result = metric.compute()
    assert set(result) == {"ppv", "ppv_sd"}
    per_sample = []
    for p, t in zip(preds.numpy(), target.numpy(), strict=True):
        tp, fp = (p & t).sum(), (p & ~t).sum()
        if tp + fp:
            per_sample.append(tp / (tp + fp))
    assert len(per_sample) == 6  # the empty prediction has no PPV
    assert result["ppv"].item() == pytest.approx(np.mean(per_sample), abs=1e-12)
    assert result["ppv_sd"].item() == pytest.approx(np.std(per_sample, ddof=1), abs=1e-12)


def test_repeated_sample_ids_are_counted_once():
    preds, target = random_batch(6, seed=2)
    once = overlap_metrics()
    once.update(preds, target, sample_id=torch.arange(10, 16), pixel_spacing_mm=torch.ones(6, 2))
    padded = overlap_metrics()
    padded.update(
        preds[[0, 1, 2, 3]],
        target[[0, 1, 2, 3]],
        sample_id=torch.tensor([10, 11, 12, 13]),
        pixel_spacing_mm=torch.ones(4, 2),
    )
    padded.update(
        preds[[4, 5, 0, 1]],
        target[[4, 5, 0, 1]],
        sample_id=torch.tensor([14, 15, 10, 11]),
        pixel_spacing_mm=torch.ones(4, 2),
    )
    expected, got = once.compute(), padded.compute()
    no_dedup = PerSampleOverlap("jaccard")
    no_dedup.update(
        preds[[0, 1, 2, 3, 4, 5, 0, 1]], target[[0, 1, 2, 3, 4, 5, 0, 1]], torch.arange(8)
    )
    assert no_dedup.compute()["jaccard"] != pytest.approx(expected["jaccard"].item())
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], equal_nan=True, rtol=0, atol=0)


def test_conflicting_repeated_ids_are_reported(caplog):
    preds, target = random_batch(2, seed=3)
    metric = PerSampleOverlap("dice")
    metric.update(preds, target, torch.tensor([0, 0]))
    with caplog.at_level(logging.WARNING, logger="cmrseg.metrics.functional"):
        result = metric.compute()
    assert "ids must be unique per sample" in caplog.text
    assert (
        result["dice"].item()
        == scores_from_confusion(per_sample_confusion(preds[:1], target[:1]))["dice"].item()
    )


def test_bad_sample_id_refused():
    preds, target = random_batch(2, seed=4)
    with pytest.raises(ValueError, match=r"sample_id must be a tensor \[B\] = \[2\]"):
        PerSampleOverlap("dice").update(preds, target, torch.arange(3))
    with pytest.raises(ValueError, match="integers"):
        PerSampleOverlap("dice").update(preds, target, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="score must be one of"):
        PerSampleOverlap("accuracy")


def direct_hd95(pred: np.ndarray, target: np.ndarray, spacing_mm) -> float:
    """Boundary (a 4-neighbour outside) point sets in mm, all pairwise distances, max of p95s."""

    def boundary_points_mm(mask):
        padded = np.pad(mask, 1)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        return np.argwhere(mask & ~inner) * np.asarray(spacing_mm)

    d = cdist(boundary_points_mm(pred), boundary_points_mm(target))
    return max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))


def test_hd95_of_two_points_is_their_distance_in_mm():
    pred = torch.zeros(1, 10, 10, dtype=torch.bool)
    target = pred.clone()
    pred[0, 2, 3] = True
    target[0, 5, 7] = True
    hd = hausdorff_distance_95(pred, target, torch.tensor([[2.0, 0.5]]))
    assert hd.item() == pytest.approx(math.hypot(3 * 2.0, 4 * 0.5))


@pytest.mark.parametrize("shift", [(0, 0), (2, 0), (0, 3), (3, -2)])
def test_hd95_of_shifted_concentric_squares_matches_direct_computation(shift):
    spacing_mm = [1.4, 0.7]
    pred = np.zeros((40, 48), dtype=bool)
    target = np.zeros_like(pred)
    pred[10:30, 12:36] = True
    pred[15:25, 17:31] = False  # a square ring
    r, c = shift
    target[10 + r : 30 + r, 12 + c : 36 + c] = True
    target[16 + r : 24 + r, 18 + c : 30 + c] = False
    hd = hausdorff_distance_95(
        torch.from_numpy(pred)[None],
        torch.from_numpy(target)[None],
        torch.tensor([spacing_mm], dtype=torch.float64),
    )
    assert hd.dtype == torch.float64
    assert hd.item() == pytest.approx(direct_hd95(pred, target, spacing_mm), abs=1e-9)
    if shift == (0, 0):
        # inner contours 1 px apart; the rows (1.4 mm apart) set the 95th percentile
        assert hd.item() == pytest.approx(1.4)


def test_hd95_matches_direct_computation_on_random_shapes_touching_the_edge():
    preds, target = random_batch(6, seed=5, size=20)
    target[1, :, :3] = True  # touches the image edge
    spacing = torch.tensor([[1.0, 1.0], [0.8, 1.9], [2.0, 0.5], [1.2, 1.2], [0.6, 0.6], [3.0, 1.0]])
    hd = hausdorff_distance_95(preds, target, spacing)
    assert math.isnan(hd[0].item())  # empty prediction
    for i in range(1, 6):
        expected = direct_hd95(preds[i].numpy(), target[i].numpy(), spacing[i].tolist())
        assert hd[i].item() == pytest.approx(expected, abs=1e-9)


def test_hd95_metric_counts_and_logs_undefined_samples(caplog):
    preds, target = random_batch(4, seed=6)
    target[3] = False
    metric = PerSampleHausdorff95()
    metric.update(preds, target, torch.arange(4), torch.ones(4, 2))
    with caplog.at_level(logging.WARNING, logger="cmrseg.metrics.functional"):
        result = metric.compute()
    assert result["hd95_n_undefined"].item() == 2
    assert "hd95 undefined for 2 of 4 samples" in caplog.text
    per_sample = hausdorff_distance_95(preds, target, torch.ones(4, 2))[1:3]
    assert result["hd95"].item() == pytest.approx(per_sample.mean().item())
    with pytest.raises(ValueError, match="needs pixel_spacing_mm"):
        metric.update(preds, target, torch.arange(4), None)
    with pytest.raises(ValueError, match="finite and positive"):
        metric.update(preds, target, torch.arange(4), torch.zeros(4, 2))


def test_collection_keys_per_stage():
    preds, target = random_batch(3, seed=7)
    val = overlap_metrics("val/")
    test = val.clone(prefix="test/")
    val.update(preds, target, sample_id=torch.arange(3), pixel_spacing_mm=torch.ones(3, 2))
    expected = {f"val/{s}{sd}" for s in [*SCORES, "hd95"] for sd in ("", "_sd")}
    assert set(val.compute()) == expected | {"val/hd95_n_undefined"}
    test.update(preds, target, sample_id=torch.arange(3), pixel_spacing_mm=torch.ones(3, 2))
    assert all(k.startswith("test/") for k in test.compute())


N_DDP_SAMPLES = 5


def ddp_worker(rank: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        preds, target = random_batch(N_DDP_SAMPLES, seed=8)
        spacing = torch.linspace(0.5, 2.0, 2 * N_DDP_SAMPLES).reshape(N_DDP_SAMPLES, 2)
        indices = list(
            DistributedSampler(range(N_DDP_SAMPLES), num_replicas=2, rank=rank, shuffle=False)
        )
        metrics = overlap_metrics("test/")
        for batch in (indices[:2], indices[2:]):
            metrics.update(
                preds[batch],
                target[batch],
                sample_id=torch.tensor(batch),
                pixel_spacing_mm=spacing[batch],
            )
        result = metrics.compute()
        if rank == 0:
            torch.save({k: v.cpu() for k, v in result.items()}, out_file)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_sync_matches_single_process(tmp_path):
    out_file = tmp_path / "ddp.pt"
    mp.spawn(ddp_worker, args=(str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    ddp = torch.load(out_file)
    preds, target = random_batch(N_DDP_SAMPLES, seed=8)
    spacing = torch.linspace(0.5, 2.0, 2 * N_DDP_SAMPLES).reshape(N_DDP_SAMPLES, 2)
    single = overlap_metrics("test/")
    single.update(preds, target, sample_id=torch.arange(N_DDP_SAMPLES), pixel_spacing_mm=spacing)
    expected = single.compute()
    assert ddp.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(ddp[key], expected[key], equal_nan=True, rtol=0, atol=1e-6)
