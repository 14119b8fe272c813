"""Cramer-Rao floor of the per-slice global T2* on a phantom file: what noise alone allows.

For every slice of a ``cmrseg-synth`` file (true ``labels`` and ``t2star_ms``), the floor of the
standard deviation of an unbiased estimate of the wall's T2* from its pixels:

- signal per pixel and echo ``A_k = S0 exp(-TE_k / T2*)`` with ``T2*`` the mean of the true map
  over the myocardium (the accuracy benchmark's truth) and ``S0 / sigma`` from the preset's SNR
  (``snr * exp(TE1 / snr_reference_t2star_ms)``: the mean coil sensitivity, ``sigma`` the noise
  SD of one coil's real part);
- magnitude data of ``n_coils`` coils combined by root-sum-of-squares: noncentral chi with
  ``2 n_coils`` degrees of freedom. The Fisher information about ``A`` per echo is
  ``E[(m I_L(z) / I_{L-1}(z) - A)^2] / sigma^4`` (``z = m A / sigma^2``), integrated
  numerically; below the noise floor it falls to 0, which a Gaussian model would not show;
- per pixel ``S0`` and ``T2*`` unknown (2 x 2 Fisher matrix over the echoes); the region's
  pixels share ``T2*``, each has its own ``S0``;
- independent pixels: the wall-core pixels of the true mask (``region.core_erosion_mm`` along
  the phase-encoding axis, as the default estimator uses) times the phase resolution (the
  display rows interpolate ``phase_resolution`` as many acquired lines: their noise is
  correlated).

Two floors per slice: any unbiased region estimator (``sd_pixel / sqrt(n_eff)``) and the
median of efficient pixel fits (``sqrt(pi / 2)`` larger, the median's efficiency on normal
data). It ignores every bias (noise-floor model error, ghosts, blurring with blood, a non-uniform
wall), so it is a lower bound of the error, not a prediction. The median |relative error| over
the slices of a band is drawn by Monte Carlo from normal errors with each slice's floor.

    python benchmarks/bench_t2star_floor.py FILE.h5 --preset hard
"""

from __future__ import annotations

import argparse
import sys

import h5py
import numpy as np
from scipy import special

from cmrseg.core.labels import MYOCARDIUM
from cmrseg.synth.config import load_synth_config
from cmrseg.t2star import load_t2star_config
from cmrseg.t2star.regions import core_erosion_px, wall_core_mask

BANDS = ((2.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 45.0), (5.0, 45.0), (2.0, 45.0))


def amplitude_information(amplitude: np.ndarray, n_coils: int) -> np.ndarray:
    """Fisher information about the amplitude of RSS magnitude data, noise SD 1 per coil part.

    Args:
        amplitude: True RSS amplitudes ``A`` (units of the per-coil noise SD), any shape.
        n_coils: Coils combined by root-sum-of-squares (``L``).

    Returns:
        ``I(A)``, same shape: 1 for ``A >> 1`` (Gaussian), 0 at ``A = 0``.
    """
    m = np.linspace(1e-6, float(np.max(amplitude)) + 12.0 + 3.0 * np.sqrt(n_coils), 6000)
    dm = m[1] - m[0]
    out = np.empty(np.shape(amplitude))
    for index, a in np.ndenumerate(np.asarray(amplitude, dtype=float)):
        if a <= 0:
            out[index] = 0.0
            continue
        z = m * a
        # log pdf of the noncentral chi: L log m - (L - 1) log A - (m^2 + A^2) / 2 + log I_{L-1}(z)
        log_pdf = (
            n_coils * np.log(m)
            - (n_coils - 1) * np.log(a)
            - (m**2 + a**2) / 2
            + np.log(special.ive(n_coils - 1, z))
            + z
        )
        pdf = np.exp(log_pdf)
        ratio = special.ive(n_coils, z) / special.ive(n_coils - 1, z)
        out[index] = np.sum((m * ratio - a) ** 2 * pdf) * dm / (np.sum(pdf) * dm)
    return out


def pixel_t2star_sd(t2star_ms: float, s0: float, te_ms: np.ndarray, n_coils: int) -> float:
    """Cramer-Rao SD (ms) of one pixel's T2* with its S0 unknown; noise SD 1 per coil part."""
    decay = np.exp(-te_ms / t2star_ms)
    info = amplitude_information(s0 * decay, n_coils)
    grad = np.stack([decay, s0 * te_ms / t2star_ms**2 * decay])  # d A / d (S0, T2*)
    fisher = (grad * info) @ grad.T
    return float(np.sqrt(np.linalg.inv(fisher)[1, 1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="cmrseg-synth file with labels and t2star_ms")
    parser.add_argument("--preset", required=True, help="the preset the file was made with")
    parser.add_argument("--draws", type=int, default=2000, help="Monte Carlo draws")
    args = parser.parse_args()
    print("command: python benchmarks/bench_t2star_floor.py " + " ".join(sys.argv[1:]))
    acq = load_synth_config(args.preset).acquisition
    erosion_mm = load_t2star_config().region.core_erosion_mm
    with h5py.File(args.file, "r") as f:
        labels, true_map = f["labels"][:], f["t2star_ms"][:]
        te_ms, spacing = f["te_ms"][:].astype(float), f["pixel_spacing_mm"][:]
        axis = f["phase_encoding_axis"][:]
    n = len(labels)
    truth, n_eff, sd_region = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        wall = labels[i] == MYOCARDIUM
        truth[i] = np.mean(true_map[i][wall])
        erosion = core_erosion_px(erosion_mm, spacing[i], int(axis[i]))
        core = wall_core_mask(labels[i], erosion, int(axis[i]))
        n_eff[i] = max(1.0, core.sum() * acq.phase_resolution)
        s0 = acq.snr * np.exp(te_ms[i, 0] / acq.snr_reference_t2star_ms)
        sd_region[i] = pixel_t2star_sd(truth[i], s0, te_ms[i], acq.n_coils) / np.sqrt(n_eff[i])
    sd_median = np.sqrt(np.pi / 2) * sd_region
    rng = np.random.default_rng(0)
    print(
        f"preset {args.preset}: SNR {acq.snr:g} (S0/sigma {s0:.1f}), {acq.n_coils} coils, phase "
        f"resolution {acq.phase_resolution:g}; {n} slices, independent wall-core pixels median "
        f"{np.median(n_eff):.0f} ({n_eff.min():.0f}-{n_eff.max():.0f})"
    )
    print(
        f"{'band (ms)':>10s} {'slices':>6s} {'floor SD: region':>17s} {'median fits':>12s} "
        f"{'median |err|: region':>21s} {'median fits':>12s}"
    )
    for low, high in BANDS:
        sel = (truth >= low) & (truth < high)
        if not sel.any():
            continue
        rel_region, rel_median = sd_region[sel] / truth[sel], sd_median[sel] / truth[sel]
        draws = rng.standard_normal((args.draws, int(sel.sum())))
        err_region = np.median(np.median(np.abs(draws * rel_region), axis=1))
        err_median = np.median(np.median(np.abs(draws * rel_median), axis=1))
        print(
            f"{low:4.0f}-{high:<4.0f} {sel.sum():6d} {100 * np.median(rel_region):16.2f}% "
            f"{100 * np.median(rel_median):11.2f}% {100 * err_region:20.2f}% "
            f"{100 * err_median:11.2f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
