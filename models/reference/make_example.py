"""Write the bundled low-field example examples/colin27/ (test slice) and examples/colin27/validation/.

Source: Colin27 T1 template ``/usr/share/mricron/templates/ch2.nii.gz`` from the Debian package
``mricron-data`` (181 x 217 x 181 voxels, 1 mm, uint8, sform = identity axes: i -> +x (subject's
right), j -> +y (anterior), k -> +z (superior)). The NIfTI-1 header is parsed here with
numpy + gzip (no nibabel).

Per slice (test: axial k = 90, noise seed 2026; validation: axial k = 70, noise seed 2027):
  1. ``s = vol[k, :, :]`` i.e. the plane of constant NIfTI index k (third axis), rows = j, cols = i;
     rows are flipped so anterior is at the top (head upright); columns keep i increasing to the
     right (subject's right on the image right, neurological convention).
  2. Intensity ``scl_slope * v + scl_inter`` scaled to [0, 1] by the slice maximum, embedded centred
     into a 256 x 256 grid (rows offset (256 - 217) // 2 = 19, columns (256 - 181) // 2 = 37).
  3. Smooth synthetic phase ``0.5 pi p(u, v)``, ``p`` a quadratic polynomial in u, v in [-1, 1] with
     coefficients uniform(-1, 1) from ``default_rng(k)``, normalised by the sum of |coefficients|
     (so |phase| <= pi/2). ``target = magnitude * exp(i phase)`` (complex64).
  4. ``kfull = F target`` (unitary centred FFT, docs/design.md §3.2); mask = central 128 x 128 block
     (rows and columns 64..191); noise ``n = sigma/sqrt(2) (a + i b)``, ``[a, b] =
     default_rng(seed).standard_normal((2, 256, 256))``, ``sigma = 0.15 rms``,
     ``rms = sqrt(mean |kfull|^2)`` over all 256 x 256; ``kspace = mask (kfull + n)`` (complex64).

Run: models/.venv/bin/python models/reference/make_example.py [--source PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import gzip
import pathlib
import struct
import sys
import zlib

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from sparsemap_reference import centred_fft2, centred_ifft2  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
SOURCE = pathlib.Path("/usr/share/mricron/templates/ch2.nii.gz")
GRID = 256
BLOCK = (64, 192)
NOISE_REL = 0.15
COMMAND = "models/.venv/bin/python models/reference/make_example.py"

NIFTI_DTYPES = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64, 256: np.int8,
                512: np.uint16, 768: np.uint32}


def read_nifti(path: pathlib.Path) -> tuple[np.ndarray, dict]:
    """Minimal NIfTI-1 reader: returns the volume as float64 ``[nz, ny, nx]`` (index ``[k, j, i]``) and header."""
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    if struct.unpack(endian + "i", raw[:4])[0] != 348:
        raise ValueError(f"{path}: not a NIfTI-1 file (sizeof_hdr != 348)")
    magic = raw[344:348]
    if magic not in (b"n+1\x00", b"ni1\x00"):
        raise ValueError(f"{path}: bad NIfTI magic {magic!r}")
    dim = struct.unpack(endian + "8h", raw[40:56])
    datatype, bitpix = struct.unpack(endian + "hh", raw[70:74])
    vox_offset, scl_slope, scl_inter = struct.unpack(endian + "fff", raw[108:120])
    sform_code = struct.unpack(endian + "h", raw[254:256])[0]
    srow = np.array(struct.unpack(endian + "12f", raw[280:328]), dtype=np.float64).reshape(3, 4)
    if dim[0] != 3:
        raise ValueError(f"{path}: expected a 3-D volume, dim = {dim}")
    if datatype not in NIFTI_DTYPES:
        raise ValueError(f"{path}: unsupported datatype {datatype}")
    nx, ny, nz = dim[1:4]
    dt = np.dtype(NIFTI_DTYPES[datatype]).newbyteorder(endian)
    off = int(vox_offset)
    count = nx * ny * nz
    vol = np.frombuffer(raw, dtype=dt, count=count, offset=off).reshape(nz, ny, nx).astype(np.float64)
    if scl_slope != 0.0:
        vol = vol * scl_slope + scl_inter
    hdr = dict(dim=dim, datatype=datatype, bitpix=bitpix, vox_offset=vox_offset, scl_slope=scl_slope,
               scl_inter=scl_inter, sform_code=sform_code, srow=srow)
    return vol, hdr


def write_png(path: pathlib.Path, img: np.ndarray) -> None:
    """8-bit greyscale PNG writer (pure Python + zlib); ``img`` in [0, 1]."""
    a = np.clip(np.round(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    h, w = a.shape
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def make_target(vol: np.ndarray, k: int) -> np.ndarray:
    s = vol[k, :, :][::-1, :]  # rows j reversed: anterior at the top
    s = s / s.max()
    h, w = s.shape
    mag = np.zeros((GRID, GRID))
    r0, c0 = (GRID - h) // 2, (GRID - w) // 2
    mag[r0:r0 + h, c0:c0 + w] = s
    u, v = np.meshgrid(np.linspace(-1, 1, GRID), np.linspace(-1, 1, GRID), indexing="ij")
    coef = np.random.default_rng(k).uniform(-1, 1, 6)
    p = (coef[0] + coef[1] * u + coef[2] * v + coef[3] * u ** 2 + coef[4] * u * v + coef[5] * v ** 2) / np.sum(
        np.abs(coef))
    return (mag * np.exp(1j * 0.5 * np.pi * p)).astype(np.complex64)


def simulate(target: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    kfull = centred_fft2(target.astype(np.complex128))
    rms = np.sqrt(np.mean(np.abs(kfull) ** 2))
    ab = np.random.default_rng(seed).standard_normal((2, GRID, GRID))
    noise = NOISE_REL * rms / np.sqrt(2.0) * (ab[0] + 1j * ab[1])
    mask = np.zeros((GRID, GRID), dtype=np.uint8)
    mask[BLOCK[0]:BLOCK[1], BLOCK[0]:BLOCK[1]] = 1
    kspace = np.where(mask != 0, kfull + noise, 0).astype(np.complex64)
    return kspace, mask


def write_slice(vol: np.ndarray, k: int, seed: int, out: pathlib.Path, role: str, source: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    target = make_target(vol, k)
    kspace, mask = simulate(target, seed)
    np.save(out / "target.npy", target)
    np.save(out / "kspace.npy", kspace)
    np.save(out / "mask.npy", mask)
    zf = np.abs(centred_ifft2(kspace.astype(np.complex128)))
    write_png(out / "preview.png", np.concatenate([np.abs(target), zf / max(zf.max(), 1e-12)], axis=1))
    (out / "README.md").write_text(
        f"# Colin27 low-field example ({role})\n\n"
        f"Source: `{source}` (Debian package `mricron-data`, Colin27 T1 template, 181x217x181 1 mm voxels, uint8), "
        f"axial slice k = {k} of the NIfTI third axis (index order [i, j, k], sform axes i -> +x right, "
        f"j -> +y anterior, k -> +z superior), rows flipped so anterior is at the top, columns with the subject's "
        f"right on the image right (neurological); intensity scaled to [0, 1] by the slice maximum and embedded "
        f"centred in a 256x256 grid, with a smooth synthetic phase 0.5*pi*(normalised quadratic polynomial, "
        f"coefficients from numpy default_rng({k})). `target.npy` is that complex64 image; `kspace.npy` = "
        f"mask * (F target + noise) in the unitary centred convention of docs/design.md §3.2, mask (`mask.npy`, uint8) "
        f"= the central 128x128 block (rows and columns 64..191), noise complex Gaussian with "
        f"E|n|^2 = (0.15 rms)^2, rms = sqrt(mean |F target|^2) over the full 256x256 k-space, "
        f"default_rng({seed}).standard_normal((2, 256, 256)) as real and imaginary parts. `preview.png`: |target| "
        f"(left) and the zero-filled |F^H kspace| (right). Made by `{COMMAND}`.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=pathlib.Path, default=SOURCE)
    ap.add_argument("--out", type=pathlib.Path, default=REPO / "examples" / "colin27")
    args = ap.parse_args()
    vol, hdr = read_nifti(args.source)
    print(f"{args.source}: dim={hdr['dim'][1:4]} datatype={hdr['datatype']} vox_offset={hdr['vox_offset']} "
          f"scl_slope={hdr['scl_slope']} sform_code={hdr['sform_code']}\nsrow=\n{hdr['srow']}")
    write_slice(vol, 90, 2026, args.out, "test slice", args.source)
    write_slice(vol, 70, 2027, args.out / "validation", "validation slice", args.source)
    for p in sorted(args.out.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(REPO) if p.is_relative_to(REPO) else p}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
