"""Synthetic Breakthrough Listen observations: drifting narrowband signals in noise, made with
``setigen`` and written as HDF5 filterbank files that ``blimpy`` reads.

    python make_observations.py OUTDIR [--count 8] [--seed 1]

Writes ``obs-000.h5`` ... and ``truth.json``: for each file, the injected signals (start
frequency in MHz, drift rate in Hz/s), so a test can check that a search found exactly them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

FCHANS, TCHANS = 512, 16
DF_HZ, DT_S, FCH1_MHZ = 2.7939677238464355, 18.253611008, 6095.214842353016


def make(outdir: Path, count: int, seed: int = 1, snr: float = 300.0) -> dict:
    """Write ``count`` observation files into ``outdir``; returns the truth (also saved as truth.json)."""
    import numpy as np
    import setigen as stg
    from astropy import units as u

    rng = np.random.default_rng(seed)
    outdir.mkdir(parents=True, exist_ok=True)
    truth = {"df_hz": DF_HZ, "dt_s": DT_S, "files": {}}
    for i in range(count):
        frame = stg.Frame(fchans=FCHANS * u.pixel, tchans=TCHANS * u.pixel, df=DF_HZ * u.Hz, dt=DT_S * u.s,
                          fch1=FCH1_MHZ * u.MHz, seed=int(rng.integers(1 << 30)))
        frame.add_noise(x_mean=10, noise_type="chi2")
        signals = []
        # one or two signals per file, well apart, drifting at most ~12 channels over the observation
        for start in sorted(rng.choice(np.arange(60, FCHANS - 60, 90), size=1 + i % 2, replace=False)):
            drift = float(rng.uniform(-0.1, 0.1))
            f0 = float(frame.get_frequency(index=int(start)))  # Hz
            frame.add_signal(stg.constant_path(f_start=f0 * u.Hz, drift_rate=drift * u.Hz / u.s),
                             stg.constant_t_profile(level=frame.get_intensity(snr=snr)),
                             stg.gaussian_f_profile(width=3 * u.Hz), stg.constant_bp_profile(level=1))
            signals.append({"f_start_mhz": f0 / 1e6, "drift_rate_hz_s": drift})
        name = f"obs-{i:03d}.h5"
        frame.save_h5(str(outdir / name))
        truth["files"][name] = signals
    (outdir / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    make(a.outdir, a.count, a.seed)
