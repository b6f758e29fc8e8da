#!/usr/bin/env python3
"""Thumbnail speed and quality: sluice vs the common implementation vs pyvips.

    .venv/bin/python bench/thumbnail.py [--quick]

Inputs: one photo-like 12-megapixel (4000x3000) image, generated from a seed (smooth colour
regions, texture and sensor-like noise, so the codecs do realistic work), saved as JPEG
(quality 90) and PNG under ``build/bench/thumbnail/``. ``--quick`` uses 2000x1500.

Each case makes every configured thumbnail size (``THUMBNAIL_SIZES`` default 128,512; JPEG
quality 85) from the file's bytes:

* sluice: ``sluice.thumbnails.make_thumbnails`` (what the transform handler calls);
* common: for each size, Pillow ``Image.open`` -> ``thumbnail((size, size))`` -> ``save``,
  the AWS Lambda S3 tutorial's ``resize_image`` applied once per size;
* pyvips: ``pyvips.Image.thumbnail_buffer(data, size).jpegsave_buffer(Q=85)`` per size, with
  libvips' operation cache off (it would otherwise return the previous run's result) and
  its default thread pool; a single-threaded row is shown for information;
* decode_only (information): just the decode sluice does (JPEG at its draft scale), the
  floor of any implementation that reads every pixel once.

Targets: JPEG at least 4x faster than common; sluice within 1.25x of pyvips (time ratio
sluice/pyvips <= 1.25). Quality: PSNR (RGB) and SSIM (luma) of every thumbnail against a
reference made by a full decode and one direct Lanczos resize to the same size.
"""

from __future__ import annotations

import cProfile
import functools
import io
import pstats
from collections.abc import Callable
from typing import Any

import numpy as np
from benchlib import (
    Summary,
    emit,
    interleaved,
    machine,
    parse_args,
    print_table,
    ratio,
    verdict,
    work_dir,
)
from numpy.typing import NDArray
from PIL import Image

from sluice.thumbnails import make_thumbnails

SEED = 12
SIZES = (128, 512)  # THUMBNAIL_SIZES default (docs/contracts.md)
QUALITY = 85  # THUMBNAIL_QUALITY default
TARGET_VS_COMMON_JPEG = 4.0
TARGET_VS_PYVIPS = 1.25
QUALITY_CASES = ("sluice", "common", "pyvips")

Thumbnails = dict[int, bytes]


# Inputs ------------------------------------------------------------------------------------
def photo(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like RGB image: smooth regions, texture and noise, fully determined by seed."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8))
    base = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    fine = Image.fromarray((rng.random((height // 10, width // 10, 3)) * 255).astype(np.uint8))
    texture = np.asarray(fine.resize((width, height), Image.Resampling.BILINEAR), np.float32)
    noise = rng.normal(0.0, 6.0, (height, width, 3)).astype(np.float32)
    pixels = base * 0.7 + (texture - 128.0) * 0.35 + noise + 20.0
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def inputs(width: int, height: int) -> dict[str, bytes]:
    """JPEG and PNG bytes of the seeded photo, cached on disk (generating takes seconds)."""
    folder = work_dir("thumbnail")
    paths = {
        "JPEG": folder / f"photo-{width}x{height}-{SEED}.jpg",
        "PNG": folder / f"photo-{width}x{height}-{SEED}.png",
    }
    if not all(path.exists() for path in paths.values()):
        image = photo(width, height, SEED)
        image.save(paths["JPEG"], "JPEG", quality=90)
        image.save(paths["PNG"], "PNG", compress_level=6)
    return {fmt: path.read_bytes() for fmt, path in paths.items()}


# Candidates --------------------------------------------------------------------------------
def sluice_thumbnails(data: bytes, fmt: str) -> Thumbnails:
    result = make_thumbnails(data, expected_format=fmt, sizes=SIZES, quality=QUALITY)
    return {thumbnail.size: thumbnail.data for thumbnail in result.thumbnails}


def common_thumbnails(data: bytes) -> Thumbnails:
    out = {}
    for size in SIZES:
        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=QUALITY)
            out[size] = buffer.getvalue()
    return out


def pyvips_thumbnails(data: bytes) -> Thumbnails:
    # Imported where used: cost_model.py reuses this module's inputs and baseline without
    # the bench extra (pyvips) installed.
    import pyvips  # type: ignore[import-untyped]

    return {
        size: pyvips.Image.thumbnail_buffer(data, size).jpegsave_buffer(Q=QUALITY) for size in SIZES
    }


def decode_floor(data: bytes, fmt: str) -> Thumbnails:
    """Only sluice's decode (JPEG: draft scale for the largest size): no resize, no encode."""
    with Image.open(io.BytesIO(data)) as image:
        if fmt == "JPEG":
            image.draft("RGB", (max(SIZES), max(SIZES)))
        image.load()
    return {}


def pyvips_single_thread(data: bytes) -> Thumbnails:
    import pyvips

    threads = pyvips.concurrency_get()
    pyvips.concurrency_set(1)
    try:
        return pyvips_thumbnails(data)
    finally:
        pyvips.concurrency_set(threads)


# Quality -----------------------------------------------------------------------------------
FloatImage = NDArray[np.float64]


def as_array(image: Image.Image) -> FloatImage:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def psnr(reference: FloatImage, candidate: FloatImage) -> float:
    mse = float(np.mean((reference - candidate) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _gaussian_blur(plane: FloatImage, sigma: float = 1.5, radius: int = 5) -> FloatImage:
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    rows = np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="valid"), 1, plane)
    both: FloatImage = np.apply_along_axis(
        lambda line: np.convolve(line, kernel, mode="valid"), 0, rows
    )
    return both


def ssim(reference: FloatImage, candidate: FloatImage) -> float:
    """Mean SSIM of the luma planes (Wang et al. 2004: Gaussian window 11, sigma 1.5)."""
    weights = np.array([0.299, 0.587, 0.114])
    x, y = reference @ weights, candidate @ weights
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = _gaussian_blur(x), _gaussian_blur(y)
    var_x = _gaussian_blur(x * x) - mu_x**2
    var_y = _gaussian_blur(y * y) - mu_y**2
    cov = _gaussian_blur(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(index.mean())


def references(data: bytes) -> dict[int, FloatImage]:
    with Image.open(io.BytesIO(data)) as image:
        full = image.convert("RGB")
    out = {}
    for size in SIZES:
        scale = size / max(full.size)
        target = (round(full.width * scale), round(full.height * scale))
        out[size] = as_array(full.resize(target, Image.Resampling.LANCZOS))
    return out


def quality(thumbnails: Thumbnails, refs: dict[int, FloatImage]) -> dict[int, dict[str, float]]:
    scores = {}
    for size, data in thumbnails.items():
        with Image.open(io.BytesIO(data)) as image:
            candidate = as_array(image)
        reference = refs[size]
        if candidate.shape != reference.shape:
            raise RuntimeError(f"{size}: shape {candidate.shape} != reference {reference.shape}")
        scores[size] = {
            "psnr_db": round(psnr(reference, candidate), 2),
            "ssim": round(ssim(reference, candidate), 4),
        }
    return scores


# Profile -----------------------------------------------------------------------------------
def profile(run: Callable[[], object], repetitions: int = 5, top: int = 12) -> list[str]:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repetitions):
        run()
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats("tottime")
    stats.print_stats(top)
    lines = [line.rstrip() for line in stream.getvalue().splitlines()]
    start = next(i for i, line in enumerate(lines) if "tottime" in line)
    return [line for line in lines[start:] if line.strip()]


def main() -> None:
    import pyvips

    args = parse_args(__doc__ or "", lambda p: p.add_argument("--profile", action="store_true"))
    width, height = (2000, 1500) if args.quick else (4000, 3000)
    repetitions = 3 if args.quick else 15
    pyvips.cache_set_max(0)
    data = inputs(width, height)

    result: dict[str, Any] = {
        "bench": "thumbnail",
        "quick": args.quick,
        "machine": machine(),
        "input": {"width": width, "height": height, "sizes": list(SIZES), "quality": QUALITY},
        "pyvips": {
            "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
            "threads": pyvips.concurrency_get(),
        },
        "formats": {},
    }
    rows = []
    quality_rows = []
    targets_met = True
    for fmt, raw in data.items():
        cases: dict[str, Callable[[], Thumbnails]] = {
            "sluice": functools.partial(sluice_thumbnails, raw, fmt),
            "common": functools.partial(common_thumbnails, raw),
            "pyvips": functools.partial(pyvips_thumbnails, raw),
            "pyvips_1_thread": functools.partial(pyvips_single_thread, raw),
            "decode_only": functools.partial(decode_floor, raw, fmt),
        }
        times: dict[str, Summary] = interleaved(cases, repetitions)
        refs = references(raw)
        scores = {
            name: quality(run(), refs) for name, run in cases.items() if name in QUALITY_CASES
        }
        speedup_common = ratio(times["common"].median, times["sluice"].median)
        vs_pyvips = ratio(times["sluice"].median, times["pyvips"].median)
        entry: dict[str, Any] = {
            "bytes": len(raw),
            "seconds": {name: summary.as_dict() for name, summary in times.items()},
            "speedup_vs_common": speedup_common,
            "time_vs_pyvips": vs_pyvips,
            "time_vs_pyvips_1_thread": ratio(
                times["sluice"].median, times["pyvips_1_thread"].median
            ),
            "quality": scores,
        }
        vips_met = vs_pyvips <= TARGET_VS_PYVIPS
        entry["target_vs_pyvips_met"] = vips_met
        targets_met &= vips_met
        if fmt == "JPEG":
            common_met = speedup_common >= TARGET_VS_COMMON_JPEG
            entry["target_vs_common_met"] = common_met
            targets_met &= common_met
        result["formats"][fmt] = entry
        for name, summary in times.items():
            rows.append(
                [
                    fmt,
                    name,
                    summary.ms(),
                    f"{summary.spread:.0%}",
                    f"{ratio(times['common'].median, summary.median):.2f}x",
                    f"{ratio(summary.median, times['pyvips'].median):.2f}",
                ]
            )
            for size, score in scores.get(name, {}).items():
                quality_rows.append([fmt, name, size, score["psnr_db"], score["ssim"]])
        if args.profile or (fmt == "JPEG" and not entry.get("target_vs_common_met", True)):
            entry["profile_sluice"] = profile(cases["sluice"])

    print(
        f"{width}x{height} {', '.join(f'{f} {len(b):,} B' for f, b in data.items())};"
        f" sizes {SIZES}; {repetitions} interleaved repetitions; median [min-max]"
    )
    print_table(
        "Time per image (all sizes)",
        ["format", "case", "time", "spread", "speedup vs common", "time / pyvips"],
        rows,
    )
    print_table(
        "Quality vs full-decode Lanczos reference",
        ["format", "case", "size", "PSNR dB", "SSIM"],
        quality_rows,
    )
    jpeg, png = result["formats"]["JPEG"], result["formats"]["PNG"]
    print_table(
        "Targets",
        ["target", "measured", "verdict"],
        [
            [f"JPEG >= {TARGET_VS_COMMON_JPEG}x common", f"{jpeg['speedup_vs_common']}x",
             verdict(jpeg["target_vs_common_met"])],
            [f"JPEG <= {TARGET_VS_PYVIPS}x pyvips", jpeg["time_vs_pyvips"],
             verdict(jpeg["target_vs_pyvips_met"])],
            [f"PNG <= {TARGET_VS_PYVIPS}x pyvips", png["time_vs_pyvips"],
             verdict(png["target_vs_pyvips_met"])],
        ],
    )  # fmt: skip
    for fmt, entry in result["formats"].items():
        if "profile_sluice" in entry:
            print(f"\nProfile of sluice on {fmt} (5 runs, by own time):")
            print("\n".join(entry["profile_sluice"]))
    result["targets_met"] = targets_met
    emit(result)


if __name__ == "__main__":
    main()
