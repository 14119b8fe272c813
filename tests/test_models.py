import math

import pytest
import torch
from torch import nn

from cmrseg.models import MartiniUNet, MonaiUNet, UNet, logits_to_labels

SMALL = dict(
    n_stages=4,
    features_per_stage=[4, 8, 16, 16],
    n_conv_per_stage=2,
    n_conv_per_stage_decoder=2,
    norm="batch",
    bottleneck_dropout=0.5,
)


def small_unet(**overrides) -> UNet:
    kwargs = dict(in_channels=1, num_classes=3, myocardium_classes=[2], **SMALL)
    kwargs.update(overrides)
    net = UNet(**kwargs)
    net.apply(net.initialize)
    return net


def expected_unet_params(in_channels: int, widths: list[int], num_classes: int) -> int:
    """Two bias-free 3x3 convs + norm (2 params per channel) per level, 2x2 up-convs, 1x1 head."""

    def stack(c_in: int, c_out: int) -> int:
        return 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out

    total = stack(in_channels, widths[0])
    total += sum(stack(widths[s - 1], widths[s]) for s in range(1, len(widths)))
    for s in range(len(widths) - 1, 0, -1):
        total += 4 * widths[s] * widths[s - 1] + widths[s - 1]  # transposed conv + bias
        total += stack(2 * widths[s - 1], widths[s - 1])
    return total + widths[0] * num_classes + num_classes


def test_unet_forward_backward_shapes():
    net = small_unet(in_channels=2)
    x = torch.randn(3, 2, 24, 40)
    logits = net(x)
    assert logits.shape == (3, 3, 24, 40)
    assert logits.dtype == torch.float32
    nn.functional.cross_entropy(logits, torch.randint(0, 3, (3, 24, 40))).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_monai_unet_exposes_the_network_interface():
    net = MonaiUNet(
        in_channels=2,
        num_classes=3,
        myocardium_classes=[2],
        channels=[4, 8, 16],
        strides=[2, 2],
        num_res_units=1,
        dropout=0.0,
    )
    assert (net.in_channels, net.myocardium_classes, net.size_divisor) == (2, (2,), 4)
    assert net(torch.zeros(1, 2, 16, 24)).shape == (1, 3, 16, 24)


def test_martini_unet_takes_all_echoes_and_outputs_sectors():
    net = MartiniUNet(in_channels=8, num_classes=17, **SMALL)
    net.apply(net.initialize)
    assert net(torch.randn(2, 8, 16, 32)).shape == (2, 17, 16, 32)
    assert net.myocardium_classes == tuple(range(1, 17))


@pytest.mark.parametrize("shape", [(1, 1, 20, 32), (1, 1, 32, 36), (1, 1, 7, 8)])
def test_indivisible_size_refused(shape):
    with pytest.raises(ValueError, match=r"divisible by 8, got \d+x\d+; pad or crop"):
        small_unet()(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (1, 16, 16)])
def test_wrong_channels_or_ndim_refused(shape):
    with pytest.raises(ValueError, match=r"expects images \[B, 1, H, W\]"):
        small_unet()(torch.zeros(shape))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(features_per_stage=[4, 8, 16]), "features_per_stage needs 4 values"),
        (dict(n_conv_per_stage_decoder=[2, 2]), r"n_conv_per_stage \(decoder\) needs 3"),
        (dict(n_conv_per_stage=0), "must be positive"),
        (dict(norm="group"), "norm must be"),
        (dict(bottleneck_dropout=1.0), "bottleneck_dropout"),
        (dict(myocardium_classes=[3]), "myocardium_classes"),
        (dict(num_classes=1), "num_classes"),
    ],
)
def test_bad_arguments_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_unet(**overrides)


def test_int_stage_arguments_spread():
    net = small_unet(features_per_stage=8, n_conv_per_stage=1)
    assert net.encoder.output_channels == [8, 8, 8, 8]
    assert [sum(isinstance(m, nn.Conv2d) for m in s.modules()) for s in net.encoder.stages] == [
        1,
        1,
        1,
        1,
    ]


def test_paper_config_parameter_count():
    widths = [32, 64, 128, 256, 512, 512]
    net = small_unet(n_stages=6, features_per_stage=widths, num_classes=3, n_conv_per_stage=2)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == expected_unet_params(1, widths, 3)
    assert 15e6 < n_params < 25e6


def test_bottleneck_dropout_zeroes_half_the_bottleneck_in_train_mode_only():
    torch.manual_seed(0)
    net = small_unet()
    dropouts = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [net.encoder.bottleneck_dropout] and dropouts[0].p == 0.5
    x = torch.randn(4, 1, 32, 32)
    net.eval()
    reference = net.encoder(x)[-1]
    net.encoder.bottleneck_dropout.train()
    dropped = net.encoder(x)[-1]
    active = reference > 0
    kept = dropped[active] != 0
    torch.testing.assert_close(dropped[active][kept], 2 * reference[active][kept])
    assert 0.35 < 1 - kept.float().mean() < 0.65
    first, second = net.encoder(x), net.encoder(x)
    assert all(torch.equal(a, b) for a, b in zip(first[:-1], second[:-1], strict=True))
    assert not torch.equal(first[-1], second[-1])
    net.eval()
    torch.testing.assert_close(net(x), net(x))


def test_initialize_is_he_normal_with_zero_bias():
    torch.manual_seed(0)
    net = small_unet(features_per_stage=[16, 32, 64, 64])
    conv = net.encoder.stages[2][1][3]  # second 3x3 conv of stage 2: 64 in, 64 out
    assert isinstance(conv, nn.Conv2d)
    assert abs(conv.weight.std().item() - math.sqrt(2 / (64 * 9))) < 0.01
    assert all(torch.all(m.bias == 0) for m in net.modules() if isinstance(m, nn.ConvTranspose2d))


def test_norm_choice_and_sync_batchnorm_conversion():
    batch = nn.SyncBatchNorm.convert_sync_batchnorm(small_unet())
    assert any(isinstance(m, nn.SyncBatchNorm) for m in batch.modules())
    instance = small_unet(norm="instance")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in instance.modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in instance.modules())


def ring_logits(num_classes: int, ring_class_of) -> torch.Tensor:
    """Logits [1, K, 24, 24] of a square ring (rows/cols 6..17, 3 px thick) on background."""
    classes = torch.zeros(24, 24, dtype=torch.long)
    for r in range(6, 18):
        for c in range(6, 18):
            if not (9 <= r < 15 and 9 <= c < 15):
                classes[r, c] = ring_class_of(r, c)
    return nn.functional.one_hot(classes, num_classes).permute(2, 0, 1)[None].float()


def test_logits_to_labels_fills_the_ring():
    labels = logits_to_labels(ring_logits(3, lambda r, c: 2), [2], keep_largest_component=True)
    assert labels.dtype == torch.uint8 and labels.shape == (1, 24, 24)
    assert torch.all(labels[0, 9:15, 9:15] == 1)
    assert torch.all(labels[0, 6:9, 6:18] == 2)
    assert (labels == 2).sum() == 12 * 12 - 6 * 6
    assert (labels == 1).sum() == 36
    assert torch.all(labels[0, :6] == 0)


def test_logits_to_labels_merges_sectors_and_keeps_largest_component():
    logits = ring_logits(17, lambda r, c: 1 + (r + c) % 16)
    logits[0, :, 0, 0] = 0
    logits[0, 5, 0, 0] = 1  # a one-pixel island of sector 5
    kept = logits_to_labels(logits, range(1, 17), keep_largest_component=False)
    cleaned = logits_to_labels(logits, range(1, 17), keep_largest_component=True)
    assert kept[0, 0, 0] == 2 and cleaned[0, 0, 0] == 0
    assert torch.equal(kept[0, 1:], cleaned[0, 1:])
    assert (cleaned == 1).sum() == 36 and (cleaned == 2).sum() == 108


def test_open_ring_has_no_blood_pool():
    logits = ring_logits(3, lambda r, c: 0 if c == 11 and r < 9 else 2)
    labels = logits_to_labels(logits, [2], keep_largest_component=True)
    assert (labels == 1).sum() == 0
    assert (labels == 2).sum() == 108 - 3


def test_a_myocardium_threshold_is_stricter_than_the_arg_max():
    probs = torch.zeros(1, 3, 4, 4)
    probs[0, 0] = 1.0
    # three pixels where the wall is the most probable class, with 0.4, 0.6 and 0.9
    for col, p_myo in enumerate((0.4, 0.6, 0.9)):
        probs[0, :, 1, col] = torch.tensor([(1 - p_myo) / 2, (1 - p_myo) / 2, p_myo])
    argmax = logits_to_labels(probs, [2], keep_largest_component=False)
    assert argmax[0, 1, :3].tolist() == [2, 2, 2]
    at_half = logits_to_labels(probs, [2], keep_largest_component=False, myocardium_threshold=0.5)
    assert at_half[0, 1, :3].tolist() == [0, 2, 2]
    strict = logits_to_labels(probs, [2], keep_largest_component=False, myocardium_threshold=0.8)
    assert strict[0, 1, :3].tolist() == [0, 0, 2]
    assert (strict == 2).sum() == 1


def test_a_myocardium_threshold_sums_the_sector_classes():
    probs = torch.zeros(1, 4, 2, 2)
    probs[0, 0] = 1.0
    probs[0, :, 0, 0] = torch.tensor([0.4, 0.0, 0.3, 0.3])  # background the arg-max
    labels = logits_to_labels(probs, [2, 3], keep_largest_component=False, myocardium_threshold=0.5)
    assert labels[0, 0, 0] == 2
    assert (labels == 2).sum() == 1


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2, 1.5])
def test_logits_to_labels_refuses_a_threshold_outside_the_open_unit_interval(threshold: float):
    with pytest.raises(ValueError, match=r"myocardium_threshold must be in \(0, 1\)"):
        logits_to_labels(
            torch.zeros(1, 3, 4, 4),
            [2],
            keep_largest_component=False,
            myocardium_threshold=threshold,
        )


def test_logits_to_labels_refuses_bad_classes():
    with pytest.raises(ValueError, match=r"myocardium_classes must be non-empty classes in 0\.\.2"):
        logits_to_labels(torch.zeros(1, 3, 4, 4), [3], keep_largest_component=False)
