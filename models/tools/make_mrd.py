"""Writes small MRD/ISMRMRD HDF5 test files with the ISMRMRD Python package (h5py; its
acquisition compound is packed, 372 bytes), together with the k-space, masks and images
they were made from, so that `sparsemap recon --input FILE.h5` can be checked against
`sparsemap recon --kspace` on the same k-space and against the known image
(crates/edge/tests/mrd.rs).

    models/.venv/bin/python models/tools/make_mrd.py OUT_DIR

Conventions (docs/design.md §3.1, §3.2): k-space is centred, `F x = fftshift(fftn(
ifftshift(x))) / sqrt(N)` over the transformed axes, arrays are row-major [ky][kx]
(3-D: [kz][ky][kx]). Readout sample `i` of an acquisition lands in grid column
`n_x / 2 - center_sample + i` (samples before `discard_pre` and the last `discard_post`
are not data), as Gadgetron's BucketToBuffer places them.

Files written to OUT_DIR:
- `single2d.h5`: one coil, 256x256, the k-space of examples/colin27 (its central 128x128
  block): the 128 sampled rows, in a shuffled order, each 130 samples with one junk sample
  discarded at either end (`discard_pre = discard_post = 1`, `center_sample = 65`), so the
  readout window is columns 64..191. Full header (subject, study, series, TR/TE/flip,
  47 mT). Reconstructing it must equal `recon --kspace examples/colin27/kspace.npy --mask
  examples/colin27/mask.npy` bit for bit.
- `noise2d.h5`: `single2d.h5` with 8 noise-adjustment scans first (ACQ_IS_NOISE_MEASUREMENT,
  256 samples), 2 navigator (ACQ_IS_NAVIGATION_DATA) and 3 phase-correction
  (ACQ_IS_PHASECORR_DATA) readouts in between: the same image, and those counts.
- `multicoil.h5`: 4 coils, reconstruction grid 128x128, readout oversampled 2x (encoded x =
  256, FOV x doubled): rows = central 32 and every 3rd. `multicoil_kspace.npy` [4,128,128] is
  what removing the oversampling must give (F of each coil image on the 128x128 grid, zero on
  rows not sampled), `multicoil_mask.npy` [128,128] uint8, `multicoil_truth.npy` the image x
  (coil images S_c x with sum_c |S_c|^2 = 1, so their root-sum-of-squares is |x|).
- `vol3d.h5`: 3-D, 2 coils, 8 partitions of 64x64, rows = central 16 and every 2nd for every
  partition (a separable ky x kz pattern). `vol3d_kspace.npy` [8,2,64,64] is the 2-D k-space of
  every partition after the inverse FFT along kz (zero on rows not sampled), `vol3d_mask.npy`
  [64,64], `vol3d_truth.npy` [8,64,64] the volume.
- `partial2d.h5`: one coil, 128x128, partial Fourier and asymmetric echo: encoding limits
  rows 40..=127 (centre 64), every row 96 samples with `center_sample = 32` (columns
  32..127), except rows 60..67 which are read in full (128 samples, `center_sample = 64`).
  `partial2d_kspace.npy` and `partial2d_mask.npy` are the k-space and mask this gives.
- `bad_*.h5`: `single2d.h5` broken one way each, for the error messages: `bad_nodata` (no
  /dataset/data), `bad_dtype` (/dataset/data a plain float32 array), `bad_ky` (a row beyond
  the encoding limits), `bad_samples` (number_of_samples that does not match the data),
  `bad_nan` (a NaN sample), `bad_huge` (a header declaring a 4096x4096x64 encoded matrix:
  4 GiB per slab), `bad_table` (10^9 acquisitions declared, none written: 372 GB of table).
- `info.json`: what was written (sizes, counts, the compound's byte size per file).
"""

import json
import sys
from pathlib import Path

import h5py
import ismrmrd
import numpy as np

REPO = Path(__file__).resolve().parents[2]
GAMMA_MHZ_PER_T = 42.577478


def fft_c(x, axes):
    """Unitary centred FFT over `axes` (docs/design.md §3.2)."""
    n = np.prod([x.shape[a] for a in axes])
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x, axes=axes), axes=axes), axes=axes) / np.sqrt(n)


def header_xml(enc, recon, fov_enc, fov_recon, ky, kz, slices, coils, field_mt, trajectory="cartesian"):
    """ISMRMRD XML header text. enc/recon/fov_*: (x, y, z); ky/kz: (min, max, centre)."""
    f_hz = round(field_mt * 1e-3 * GAMMA_MHZ_PER_T * 1e6)

    def limit(name, lim):
        return f"<{name}><minimum>{lim[0]}</minimum><maximum>{lim[1]}</maximum><center>{lim[2]}</center></{name}>"

    def space(name, m, f):
        return (f"<{name}><matrixSize><x>{m[0]}</x><y>{m[1]}</y><z>{m[2]}</z></matrixSize>"
                f"<fieldOfView_mm><x>{f[0]}</x><y>{f[1]}</y><z>{f[2]}</z></fieldOfView_mm></{name}>")

    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <version>1</version>
  <subjectInformation>
    <patientName>Phantom^Colin</patientName>
    <patientID>SM-0027</patientID>
    <patientBirthdate>1970-01-02</patientBirthdate>
    <patientGender>M</patientGender>
  </subjectInformation>
  <studyInformation>
    <studyInstanceUID>1.2.826.0.1.3680043.10.1234.1</studyInstanceUID>
    <studyDescription>sparsemap MRD test</studyDescription>
  </studyInformation>
  <measurementInformation>
    <measurementID>sm_1</measurementID>
    <patientPosition>HFS</patientPosition>
    <protocolName>t1_se_lowfield</protocolName>
    <seriesDescription>T1 SE axial (Gr&#246;&#223;e test)</seriesDescription>
  </measurementInformation>
  <acquisitionSystemInformation>
    <systemVendor>sparsemap</systemVendor>
    <systemFieldStrength_T>{field_mt * 1e-3}</systemFieldStrength_T>
    <receiverChannels>{coils}</receiverChannels>
    <institutionName>Test Lab</institutionName>
  </acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>{f_hz}</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    {space("encodedSpace", enc, fov_enc)}
    {space("reconSpace", recon, fov_recon)}
    <encodingLimits>
      {limit("kspace_encoding_step_1", ky)}
      {limit("kspace_encoding_step_2", kz)}
      {limit("slice", (0, slices - 1, 0))}
    </encodingLimits>
    <trajectory>{trajectory}</trajectory>
  </encoding>
  <sequenceParameters><TR>500</TR><TE>15</TE><flipAngle_deg>90</flipAngle_deg></sequenceParameters>
</ismrmrdHeader>
"""


GEOMETRY = dict(position=(10.5, -20.25, 30.0), read_dir=(1.0, 0.0, 0.0), phase_dir=(0.0, 1.0, 0.0),
                slice_dir=(0.0, 0.0, 1.0))


def acquisition(samples, ky, kz=0, slice_=0, center=None, discard=(0, 0), flags=()):
    """An Acquisition of `samples` [coils][n] (complex)."""
    samples = np.ascontiguousarray(samples, dtype=np.complex64)
    acq = ismrmrd.Acquisition.from_array(samples)
    acq.idx.kspace_encode_step_1 = ky
    acq.idx.kspace_encode_step_2 = kz
    acq.idx.slice = slice_
    acq.center_sample = samples.shape[1] // 2 if center is None else center
    acq.discard_pre, acq.discard_post = discard
    acq.available_channels = samples.shape[0]
    for name, value in GEOMETRY.items():
        setattr(acq, name, value)
    for flag in flags:
        acq.set_flag(flag)
    return acq


def write(path, xml, acquisitions):
    path.unlink(missing_ok=True)
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(xml.encode("utf-8"))
    for acq in acquisitions:
        dset.append_acquisition(acq)
    dset.close()
    with h5py.File(path, "r") as f:
        return f["dataset/data"].dtype.itemsize


def single2d_acquisitions(rng, extra):
    """The colin27 rows as acquisitions (plus `extra(position)` readouts inserted)."""
    example = REPO / "examples/colin27"
    kspace = np.load(example / "kspace.npy")
    mask = np.load(example / "mask.npy") != 0
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    assert (mask == np.outer(mask.any(axis=1), mask.any(axis=0))).all(), "a block mask"
    first, count = cols[0], len(cols)
    acqs = []
    for i, ky in enumerate(rng.permutation(rows)):
        acqs.extend(extra(i))
        line = np.empty(count + 2, np.complex64)
        line[1:-1] = kspace[ky, first:first + count]
        line[0] = line[-1] = 1e6  # discarded junk
        # center_sample counts from the first acquired sample: column n_x/2 - center + i.
        acqs.append(acquisition(line[None, :], int(ky), center=128 - first + 1, discard=(1, 1)))
    return acqs


def main(out):
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(15)
    info = {}

    # --- single-coil 2-D, and the same with noise / navigator / phase-correction scans.
    xml = header_xml((256, 256, 1), (256, 256, 1), (256, 256, 5), (256, 256, 5),
                     (0, 255, 128), (0, 0, 0), 1, 1, 47.0)
    size = write(out / "single2d.h5", xml, single2d_acquisitions(np.random.default_rng(1), lambda i: []))
    info["single2d"] = {"compound_bytes": size}

    noise = [acquisition((rng.standard_normal((1, 256)) + 1j * rng.standard_normal((1, 256))) * 0.01, 0,
                         flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT]) for _ in range(8)]

    def extra(i):
        junk = (rng.standard_normal((1, 130)) * 50).astype(np.complex64)
        if i in (10, 70):
            return [acquisition(junk, 128, center=65, discard=(1, 1), flags=[ismrmrd.ACQ_IS_NAVIGATION_DATA])]
        if i in (0, 1, 2):
            return [acquisition(junk, 0, center=65, discard=(1, 1), flags=[ismrmrd.ACQ_IS_PHASECORR_DATA])]
        return []

    size = write(out / "noise2d.h5", xml, noise + single2d_acquisitions(np.random.default_rng(1), extra))
    info["noise2d"] = {"compound_bytes": size, "noise": 8, "navigator": 2, "phasecorr": 3}

    # --- multi-coil 2-D with 2x readout oversampling.
    target = np.load(REPO / "examples/colin27/target.npy").astype(np.complex128)
    k256 = fft_c(target, (0, 1))
    x = np.conj(fft_c(np.conj(k256[64:192, 64:192]), (0, 1)))  # F^H y = conj(F conj(y))
    n, coils = 128, 4
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    centres = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    sens = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 1.5) * np.exp(1j * (c + 1) * 0.4 * xx)
                     for c, (cy, cx) in enumerate(centres)])
    sens /= np.sqrt((np.abs(sens) ** 2).sum(axis=0))
    coil_images = sens * x
    padded = np.zeros((coils, n, 2 * n), complex)
    padded[:, :, n // 2:n // 2 + n] = coil_images
    k_enc = fft_c(padded, (1, 2))
    k_rec = fft_c(coil_images, (1, 2))
    rows = sorted(set(range(n // 2 - 16, n // 2 + 16)) | set(range(0, n, 3)))
    mask = np.zeros((n, n), np.uint8)
    mask[rows, :] = 1
    xml = header_xml((2 * n, n, 1), (n, n, 1), (440, 220, 5), (220, 220, 5), (0, n - 1, n // 2), (0, 0, 0),
                     1, coils, 47.0)
    acqs = [acquisition(k_enc[:, ky, :], ky, center=n) for ky in rows]
    size = write(out / "multicoil.h5", xml, acqs)
    np.save(out / "multicoil_kspace.npy", (k_rec * mask).astype(np.complex64))
    np.save(out / "multicoil_mask.npy", mask)
    np.save(out / "multicoil_truth.npy", x.astype(np.complex64))
    info["multicoil"] = {"compound_bytes": size, "coils": coils, "rows": len(rows)}

    # --- 3-D: 8 partitions of 64x64, 2 coils.
    nz, n, coils = 8, 64, 2
    base = np.conj(fft_c(np.conj(k256[96:160, 96:160]), (0, 1)))
    z = np.arange(nz) - nz // 2
    vol = np.stack([base * (1.0 - 0.06 * abs(p)) * np.exp(1j * 0.1 * p) for p in z])
    vol[:, 20:28, 20:28] += np.abs(vol).max() * 0.3 * (z[:, None, None] > 0)
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    sens = np.stack([np.exp(-((xx + 0.8) ** 2) / 2), np.exp(-((xx - 0.8) ** 2) / 2) * np.exp(0.5j * yy)])
    sens /= np.sqrt((np.abs(sens) ** 2).sum(axis=0))
    coil_vol = sens[None, :, :, :] * vol[:, None, :, :]  # [nz][coils][y][x]
    k3 = fft_c(coil_vol, (0, 2, 3))
    k2 = fft_c(coil_vol, (2, 3))
    rows = sorted(set(range(n // 2 - 8, n // 2 + 8)) | set(range(0, n, 2)))
    mask = np.zeros((n, n), np.uint8)
    mask[rows, :] = 1
    xml = header_xml((n, n, nz), (n, n, nz), (200, 200, 40), (200, 200, 40), (0, n - 1, n // 2),
                     (0, nz - 1, nz // 2), 1, coils, 47.0)
    acqs = [acquisition(k3[kz, :, ky, :], ky, kz=kz) for kz in range(nz) for ky in rows]
    size = write(out / "vol3d.h5", xml, acqs)
    np.save(out / "vol3d_kspace.npy", (k2 * mask).astype(np.complex64))
    np.save(out / "vol3d_mask.npy", mask)
    np.save(out / "vol3d_truth.npy", vol.astype(np.complex64))
    info["vol3d"] = {"compound_bytes": size, "coils": coils, "partitions": nz, "rows": len(rows)}

    # --- broken copies of single2d.h5.
    import shutil

    def broken(name, change):
        path = out / f"bad_{name}.h5"
        shutil.copy(out / "single2d.h5", path)
        with h5py.File(path, "r+") as f:
            change(f)

    def nodata(f):
        del f["dataset/data"]

    def dtype(f):
        del f["dataset/data"]
        f["dataset/data"] = np.zeros(16, np.float32)

    def head(field, value, index=5):
        def change(f):
            element = f["dataset/data"][index]
            if field == "ky":
                element["head"]["idx"]["kspace_encode_step_1"] = value
            else:
                element["head"][field] = value
            f["dataset/data"][index] = element
        return change

    def nan(f):
        element = f["dataset/data"][7]
        element["data"][41] = np.nan
        f["dataset/data"][7] = element

    def huge(f):
        xml = f["dataset/xml"][0].decode("utf-8")
        xml = xml.replace("<encodedSpace><matrixSize><x>256</x><y>256</y><z>1</z>",
                          "<encodedSpace><matrixSize><x>4096</x><y>4096</y><z>64</z>")
        assert "4096" in xml
        f["dataset/xml"][0] = xml.encode("utf-8")

    def table(f):
        dtype = f["dataset/data"].dtype
        del f["dataset/data"]
        f.create_dataset("dataset/data", shape=(10**9,), dtype=dtype, chunks=(1,))

    broken("huge", huge)
    broken("table", table)
    broken("nodata", nodata)
    broken("dtype", dtype)
    broken("ky", head("ky", 300))
    broken("samples", head("number_of_samples", 100))
    broken("nan", nan)

    # --- partial Fourier + asymmetric echo, per-row readout windows.
    n = 128
    k_full = fft_c(x, (0, 1)).astype(np.complex64)
    kspace = np.zeros((n, n), np.complex64)
    mask = np.zeros((n, n), np.uint8)
    acqs = []
    for ky in rng.permutation(np.arange(40, n)):
        first = 0 if 60 <= ky < 68 else 32
        kspace[ky, first:] = k_full[ky, first:]
        mask[ky, first:] = 1
        acqs.append(acquisition(k_full[None, ky, first:], int(ky), center=n // 2 - first))
    xml = header_xml((n, n, 1), (n, n, 1), (220, 220, 5), (220, 220, 5), (40, n - 1, n // 2), (0, 0, 0),
                     1, 1, 47.0)
    size = write(out / "partial2d.h5", xml, acqs)
    np.save(out / "partial2d_kspace.npy", kspace)
    np.save(out / "partial2d_mask.npy", mask)
    info["partial2d"] = {"compound_bytes": size, "rows": n - 40}

    (out / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
