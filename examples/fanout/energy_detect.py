"""An energy-detection search for narrowband signals: ``python energy_detect.py INPUT.h5 OUTDIR``.

Reads a Breakthrough Listen HDF5 filterbank file (the layout ``blimpy`` reads: dataset ``data``
shaped (time, feed, frequency) with the header as its attributes), normalises each spectrum by
its median and robust spread, and reports every channel that stands above the threshold and is
the brightest within a few channels. Writes the standard results into OUTDIR:
``filtered.npy`` (the normalised spectrogram with everything below the threshold set to 0),
``info_df.pkl`` (one row per hit: time_index, channel, frequency_mhz, snr) and ``header.pkl``.
Only numpy, pandas and h5py (with hdf5plugin for compressed files) are needed where it runs.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

try:  # setigen/blimpy write bitshuffle-compressed data: the filter comes with hdf5plugin
    import hdf5plugin  # noqa: F401
except ImportError:
    pass

THRESHOLD = 20.0  # in robust standard deviations
WINDOW = 3  # a hit is the brightest channel within +-WINDOW


def read_filterbank(path: str) -> tuple[np.ndarray, dict]:
    with h5py.File(path, "r") as f:
        data = f["data"][:]
        header = {k: (v.item() if hasattr(v, "item") and np.ndim(v) == 0 else v) for k, v in f["data"].attrs.items()}
    header = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in header.items()}
    return data[:, 0, :].astype(np.float64), header


def detect(spectra: np.ndarray, header: dict) -> tuple[np.ndarray, pd.DataFrame]:
    med = np.median(spectra, axis=1, keepdims=True)
    mad = np.median(np.abs(spectra - med), axis=1, keepdims=True) * 1.4826
    z = (spectra - med) / np.where(mad > 0, mad, 1.0)
    padded = np.pad(z, ((0, 0), (WINDOW, WINDOW)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * WINDOW + 1, axis=1)
    peak = (z >= THRESHOLD) & (z == windows.max(axis=2))
    t_idx, chan = np.nonzero(peak)
    fch1, foff = float(header["fch1"]), float(header["foff"])
    hits = pd.DataFrame({"time_index": t_idx, "time_s": t_idx * float(header["tsamp"]), "channel": chan,
                         "frequency_mhz": fch1 + chan * foff, "snr": z[t_idx, chan]})
    return np.where(z >= THRESHOLD, z, 0.0).astype(np.float32), hits


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: energy_detect.py INPUT.h5 OUTDIR", file=sys.stderr)
        return 2
    spectra, header = read_filterbank(argv[0])
    filtered, hits = detect(spectra, header)
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "filtered.npy", filtered)
    hits.to_pickle(out / "info_df.pkl")
    with open(out / "header.pkl", "wb") as f:
        pickle.dump(header, f)
    print(f"{argv[0]}: {len(hits)} hit(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
