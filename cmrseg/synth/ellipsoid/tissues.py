"""Tissues of the ellipsoid phantom: their codes, per-subject S0 and T2*, and the GRE signal.

Each tissue has a proton-density-like amplitude S0 (relative to the LV myocardium, 1.0), a
T2* in ms at 1.5 T and a fat fraction. Fat carries a six-peak spectrum, so water-fat pixels
and pure fat beat across the echoes. The ranges are this phantom's own choices, written without
reference to the default phantom; the myocardial T2* and its regional pattern live in
:mod:`cmrseg.synth.ellipsoid.cohort`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AIR_TISSUES",
    "FAT_PEAKS_PPM",
    "FAT_PEAK_WEIGHTS",
    "GYROMAGNETIC_MHZ_PER_T",
    "N_TISSUES",
    "TISSUE_NAMES",
    "TissueProperties",
    "draw_tissues",
    "echo_signal",
]

#: Tissue codes painted by :mod:`cmrseg.synth.ellipsoid.geometry`; the order is the code.
TISSUE_NAMES: tuple[str, ...] = (
    "air",
    "subcutaneous_fat",
    "skeletal_muscle",
    "soft_tissue",
    "lung",
    "liver",
    "spleen",
    "stomach",
    "marrow",
    "aorta",
    "epicardial_fat",
    "rv_wall",
    "rv_blood",
    "lv_myocardium",
    "lv_blood",
    "papillary",
)
N_TISSUES = len(TISSUE_NAMES)
_CODE = {name: code for code, name in enumerate(TISSUE_NAMES)}
#: Codes whose truth T2* is NaN (no tissue: outside the body, gas in the stomach).
AIR_TISSUES = (_CODE["air"],)

#: Fat resonances relative to water in ppm and their relative areas: the six-peak model of
#: human fat measured by Hamilton et al., NMR Biomed 2011;24:784-790 (liver fat, Table 1),
#: as used for water-fat separation with R2* by Yu et al., Magn Reson Med 2008;60:1122-1134.
FAT_PEAKS_PPM = np.array([-3.80, -3.40, -2.60, -1.94, -0.39, 0.60])
FAT_PEAK_WEIGHTS = np.array([0.087, 0.693, 0.128, 0.004, 0.039, 0.048])
#: Proton gyromagnetic ratio / 2 pi in MHz per tesla.
GYROMAGNETIC_MHZ_PER_T = 42.577478


@dataclass(frozen=True)
class TissueProperties:
    """One subject's tissue parameters, indexed by tissue code.

    Attributes:
        s0: Amplitude per tissue, relative to the LV myocardium, ``[N_TISSUES]``.
        t2star_ms: T2* per tissue in ms, ``[N_TISSUES]`` (the LV myocardium and the papillary
            muscles hold the subject's global value; their regional map is applied per pixel).
        fat_fraction: Signal fraction of fat per tissue in [0, 1], ``[N_TISSUES]``.
        stomach_gas: Whether the stomach holds gas (dark, truth NaN) rather than fluid.
        black_blood: Whether blood is suppressed (double-inversion preparation) instead of
            bright.
    """

    s0: np.ndarray
    t2star_ms: np.ndarray
    fat_fraction: np.ndarray
    stomach_gas: bool
    black_blood: bool

    @property
    def air_codes(self) -> tuple[int, ...]:
        """Codes whose truth T2* is NaN in this subject."""
        return (*AIR_TISSUES, _CODE["stomach"]) if self.stomach_gas else AIR_TISSUES


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def draw_tissues(rng: np.random.Generator, myocardium_t2star_ms: float) -> TissueProperties:
    """Draw one subject's tissue S0, T2* (ms, 1.5 T) and fat fractions.

    The liver is iron-loaded (T2* 1-8 ms) with probability 0.8 when the heart is
    (T2* < 20 ms) and 0.35 otherwise; a fifth of the subjects are scanned black-blood.

    Args:
        rng: The subject's generator (consumed in a fixed order).
        myocardium_t2star_ms: The subject's global myocardial T2* in ms.

    Returns:
        The subject's tissue table.
    """
    s0 = np.zeros(N_TISSUES)
    t2 = np.full(N_TISSUES, 30.0)
    ff = np.zeros(N_TISSUES)

    def put(name: str, s0_range: tuple[float, float], t2_range: tuple[float, float]) -> None:
        s0[_CODE[name]] = rng.uniform(*s0_range)
        t2[_CODE[name]] = rng.uniform(*t2_range)

    put("subcutaneous_fat", (1.8, 2.8), (14.0, 30.0))
    ff[_CODE["subcutaneous_fat"]] = rng.uniform(0.85, 0.95)
    s0[_CODE["epicardial_fat"]] = s0[_CODE["subcutaneous_fat"]] * rng.uniform(0.8, 1.0)
    t2[_CODE["epicardial_fat"]] = t2[_CODE["subcutaneous_fat"]]
    ff[_CODE["epicardial_fat"]] = rng.uniform(0.7, 0.9)
    put("skeletal_muscle", (0.7, 1.05), (20.0, 32.0))
    put("soft_tissue", (0.5, 0.9), (18.0, 40.0))
    ff[_CODE["soft_tissue"]] = rng.uniform(0.1, 0.4)
    put("lung", (0.03, 0.10), (0.8, 2.5))
    iron_liver = rng.uniform() < (0.8 if myocardium_t2star_ms < 20.0 else 0.35)
    put("liver", (0.6, 1.0), (1.0, 8.0) if iron_liver else (12.0, 30.0))
    put("spleen", (0.8, 1.2), (8.0, 50.0))
    stomach_gas = bool(rng.uniform() < 0.5)
    put("stomach", (0.01, 0.03) if stomach_gas else (1.0, 1.5), (60.0, 120.0))
    put("marrow", (1.1, 1.6), (6.0, 20.0))
    ff[_CODE["marrow"]] = rng.uniform(0.3, 0.6)
    black_blood = bool(rng.uniform() < 0.2)
    blood_s0 = rng.uniform(0.08, 0.25) if black_blood else rng.uniform(1.2, 1.9)
    blood_t2 = rng.uniform(30.0, 60.0)
    for name in ("lv_blood", "rv_blood"):
        s0[_CODE[name]], t2[_CODE[name]] = blood_s0, blood_t2
    s0[_CODE["aorta"]] = blood_s0 * rng.uniform(0.8, 1.3)
    t2[_CODE["aorta"]] = blood_t2
    for name in ("lv_myocardium", "papillary"):
        s0[_CODE[name]], t2[_CODE[name]] = 1.0, myocardium_t2star_ms
    s0[_CODE["rv_wall"]] = rng.uniform(0.85, 1.1)
    t2[_CODE["rv_wall"]] = myocardium_t2star_ms * rng.uniform(0.9, 1.3)
    s0[_CODE["air"]] = 0.0
    return TissueProperties(s0, t2, ff, stomach_gas, black_blood)


def echo_signal(
    te_ms: np.ndarray,
    s0: float | np.ndarray,
    t2star_ms: float | np.ndarray,
    fat_fraction: float | np.ndarray,
    field_strength_t: float,
) -> np.ndarray:
    """Complex GRE signal of water + six-peak fat with one shared T2*.

    ``S(TE) = S0 [(1 - f) + f sum_p w_p exp(i 2 pi df_p TE)] exp(-TE / T2*)``, with
    ``df_p = ppm_p * 1e-6 * gamma * B0`` (-217 Hz for the main peak at 1.5 T).

    Args:
        te_ms: Echo times in ms, ``[E]``.
        s0: Amplitude, scalar or ``[...]``.
        t2star_ms: T2* in ms, broadcastable with ``s0``.
        fat_fraction: Fat signal fraction in [0, 1], broadcastable with ``s0``.
        field_strength_t: Main field in tesla.

    Returns:
        Complex signal ``[..., E]``.
    """
    te_s = np.asarray(te_ms, dtype=np.float64) * 1e-3
    shift_hz = FAT_PEAKS_PPM * GYROMAGNETIC_MHZ_PER_T * field_strength_t
    fat = (FAT_PEAK_WEIGHTS[:, None] * np.exp(2j * np.pi * shift_hz[:, None] * te_s)).sum(0)
    s0 = np.asarray(s0, dtype=np.float64)[..., None]
    t2 = np.asarray(t2star_ms, dtype=np.float64)[..., None]
    f = np.asarray(fat_fraction, dtype=np.float64)[..., None]
    return s0 * ((1.0 - f) + f * fat) * np.exp(-np.asarray(te_ms) / t2)
