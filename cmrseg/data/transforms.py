"""Image-level transforms of the data pipeline: augmentation plumbing and normalization.

Order per sample (see :func:`augment`): the raw ``[C, H, W]`` image is divided by its maximum
over all channels, so albumentations sees float data in ``[0, 1]`` (its convention for the
intensity transforms: gamma, noise ``std_range``, clipping); the augmentation runs on the
``[H, W, C]`` image and the ``[H, W]`` mask together, so every echo channel and the mask get the
same geometric transform; the image is multiplied back to its original units; then
:func:`normalize` applies the per-image mean-variance normalization (MVN). Because MVN removes
any affine change of intensity, brightness and contrast transforms are pointless before it;
gamma, noise and blur are not.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
from albumentations import DualTransform
from albumentations.core.type_definitions import Targets

__all__ = [
    "NORMALIZATIONS",
    "Normalization",
    "RandomRotate90SameShape",
    "augment",
    "iter_transforms",
    "normalize",
    "seed_transform",
]

Normalization = Literal["mvn", "mvn_per_channel", "none"]
NORMALIZATIONS: tuple[Normalization, ...] = ("mvn", "mvn_per_channel", "none")
_MVN_EPS = 1e-6


def normalize(image: np.ndarray, mode: Normalization) -> np.ndarray:
    """Mean-variance normalize one image (the paper's MVN).

    Args:
        image: float32 ``[C, H, W]``.
        mode: ``mvn``: one mean and standard deviation over all channels and pixels, so the
            signal decay between echo channels is kept; ``mvn_per_channel``: each channel to zero
            mean and unit variance on its own; ``none``: unchanged.

    Returns:
        float32 ``[C, H, W]``; a constant image (or channel) becomes zeros.
    """
    if mode == "none":
        return image
    if mode not in ("mvn", "mvn_per_channel"):
        raise ValueError(f"unknown normalization {mode!r}; expected one of {NORMALIZATIONS}")
    image = np.asarray(image, dtype=np.float32)
    if mode == "mvn":
        centered = image - image.mean(dtype=np.float32)
        std = np.sqrt(np.vdot(centered, centered) / centered.size)
        centered *= np.float32(1.0 / max(float(std), _MVN_EPS))
        return centered
    centered = image - image.mean(axis=(1, 2), keepdims=True, dtype=np.float32)
    pixels = image.shape[1] * image.shape[2]
    std = np.sqrt(np.einsum("chw,chw->c", centered, centered) / pixels)
    centered *= (1.0 / np.maximum(std, _MVN_EPS)).astype(np.float32)[:, None, None]
    return centered


def augment(
    transform: Callable[..., dict[str, Any]], image: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply an albumentations transform to an image and its mask together.

    Args:
        transform: e.g. an ``albumentations.Compose``; called as ``transform(image=, mask=)``.
        image: float32 ``[C, H, W]``, >= 0, in the file's units.
        mask: ``[H, W]`` integer labels, or ``None`` (unlabelled data).

    Returns:
        The transformed ``[C, H, W]`` float32 image in the file's units, and ``[H, W]`` mask.
        Both keep their shapes; a transform that changes H or W is an error.
    """
    peak = float(image.max())
    scale = peak if peak > 0 else 1.0
    hwc = np.multiply(image.transpose(1, 2, 0), np.float32(1.0 / scale), order="C")
    data: dict[str, np.ndarray] = {"image": hwc}
    if mask is not None:
        data["mask"] = mask
    out = transform(**data)
    new_image = out["image"]
    if new_image.ndim == 2:
        new_image = new_image[:, :, None]
    if new_image.shape != data["image"].shape:
        raise ValueError(
            f"augmentation changed the image shape from {data['image'].shape} to "
            f"{new_image.shape} (H, W, C); batches could not be stacked. Use shape-keeping "
            "transforms (e.g. cmrseg.data.transforms.RandomRotate90SameShape)"
        )
    chw = np.multiply(new_image.transpose(2, 0, 1), np.float32(scale), order="C", dtype=np.float32)
    return chw, (out["mask"] if mask is not None else None)


def iter_transforms(transform: Any) -> Iterator[Any]:
    """Yield a transform and, recursively, every transform inside a Compose/OneOf."""
    yield transform
    for child in getattr(transform, "transforms", ()) or ():
        yield from iter_transforms(child)


def seed_transform(transform: Any, seed: int) -> None:
    """Give an albumentations pipeline one random stream seeded with ``seed``.

    ``albumentations.Compose(seed=...)`` seeds every child transform with the same seed, so
    e.g. two flips with ``p=0.5`` always fire together; here all transforms draw from one shared
    numpy and one shared Python generator instead. Call it in every ``DataLoader`` worker with
    a worker-specific seed: a forked or pickled pipeline otherwise repeats the parent's stream.

    Args:
        transform: An albumentations transform or compose (other callables are left alone).
        seed: Non-negative seed.
    """
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def _fit_center(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Center-crop or zero-pad the first two axes of ``array`` to ``height x width``."""
    out = np.zeros((height, width, *array.shape[2:]), dtype=array.dtype)
    h, w = array.shape[:2]
    ch, cw = min(h, height), min(w, width)
    src_r, src_c = (h - ch) // 2, (w - cw) // 2
    dst_r, dst_c = (height - ch) // 2, (width - cw) // 2
    out[dst_r : dst_r + ch, dst_c : dst_c + cw] = array[src_r : src_r + ch, src_c : src_c + cw]
    return out


class RandomRotate90SameShape(DualTransform):
    """Rotate by 90, 180 or 270 degrees (equally likely) about the center, keeping H x W.

    The paper's rotation augmentation for non-square images: a 90 or 270 degree rotation of a
    ``H x W`` image is ``W x H``; it is center-cropped along the longer and zero-padded along the
    shorter side back to ``H x W`` (the same as rotating on a square zero-padded canvas and
    cropping the center). The heart sits near the center of a cardiac short-axis view, so the
    cropped margin is background. Pixels are moved exactly, never interpolated.

    Args:
        p: Probability of rotating at all.
    """

    _targets = (Targets.IMAGE, Targets.MASK)

    def __init__(self, *, p: float) -> None:
        super().__init__(p=p)

    def get_params(self) -> dict[str, int]:
        """Draw the number of quarter turns, 1 to 3 (counterclockwise)."""
        return {"turns": self.py_random.randint(1, 3)}

    def _rotate(self, array: np.ndarray, turns: int) -> np.ndarray:
        h, w = array.shape[:2]
        return _fit_center(np.rot90(array, turns, axes=(0, 1)), h, w)

    def apply(self, img: np.ndarray, turns: int = 0, **params: Any) -> np.ndarray:
        """Rotate an ``[H, W, C]`` image."""
        return self._rotate(img, turns)

    def apply_to_mask(self, mask: np.ndarray, turns: int = 0, **params: Any) -> np.ndarray:
        """Rotate an ``[H, W]`` mask."""
        return self._rotate(mask, turns)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Names of the constructor arguments, for albumentations serialization."""
        return ()
