"""Benchmark capture-date reading against exiftool on the same JPEGs.

Writes N JPEGs with phone-like EXIF into a temp dir, then times, in one run:
`capture_date` over every file (in-process, one thread), exifread alone
(`process_file(details=False)`, the general path), and exactly
`exiftool -r -p '$DateTimeOriginal' DIR`. Checks that our dates equal
exiftool's and prints per-file costs and the speed ratio.

    python bench/dates.py --n 2000 [--size 1024x768] [--keep DIR] [--corpus]
                          [--repeat 3] [--xmp-frac 0.05]

`--xmp-frac` (default 5 %) of the files are edited exports: EXIF keeps only IFD0
DateTime (the time of the edit), the capture date is in an XMP packet as Lightroom
writes it (bench/corpus.py `xmp_packet`), so those files take the XMP path.

`--corpus` uses bench/corpus.py instead (photo-like JPEGs of 640-1600 px, copies,
resized copies without EXIF, three 8 MiB files padded with APP15 segments before
the EXIF); slower to write.
"""

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import exifread
import numpy as np
from PIL import ExifTags, Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import xmp_packet  # noqa: E402
from pipeline.dates import CaptureDate, capture_date  # noqa: E402

T = TypeVar("T")
CAMERAS = (("Apple", "iPhone 12"), ("Google", "Pixel 7"), ("Canon", "Canon EOS 80D"))
EXIF_FORMAT = "%Y:%m:%d %H:%M:%S"


def exif_block(index: int, edited: bool = False) -> tuple[bytes, bytes | None]:
    """Phone-like EXIF: make, model, three dates, offset and sub-seconds. An
    edited export keeps only IFD0 DateTime (the edit) and carries its capture
    date in XMP (returned second)."""
    taken = datetime(2015, 1, 1) + timedelta(hours=7 * index, seconds=index)
    stamp = taken.strftime(EXIF_FORMAT)
    make, model = CAMERAS[index % len(CAMERAS)]
    exif = Image.Exif()
    base = ExifTags.Base
    exif[base.Make], exif[base.Model], exif[base.DateTime] = make, model, stamp
    exif[base.Software] = "bench 1.0"
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    if edited:
        edit = taken + timedelta(days=400)
        exif[base.DateTime] = edit.strftime(EXIF_FORMAT)
        return exif.tobytes(), xmp_packet(taken, edit)
    sub[base.DateTimeOriginal] = sub[base.DateTimeDigitized] = stamp
    sub[base.OffsetTimeOriginal] = "+02:00"
    sub[base.SubsecTimeOriginal] = f"{index % 1000:03d}"
    sub[base.ExposureTime] = (1, 120)
    sub[base.FNumber] = (18, 10)
    sub[base.ISOSpeedRatings] = 100
    return exif.tobytes(), None


def write_jpegs(folder: Path, n: int, size: tuple[int, int], xmp_frac: float) -> None:
    rng = np.random.default_rng(0)
    grain = rng.integers(0, 40, (size[1], size[0], 3), dtype=np.uint8)
    for index in range(n):
        colour = rng.integers(0, 200, 3, dtype=np.uint8)
        buf = io.BytesIO()
        edited = int((index + 1) * xmp_frac) > int(index * xmp_frac)
        exif, xmp = exif_block(index, edited)
        extra = {} if xmp is None else {"xmp": xmp}
        Image.fromarray(grain + colour, "RGB").save(
            buf, "JPEG", quality=85, exif=exif, **extra
        )
        path = folder / f"{index // 500:02d}" / f"photo_{index:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(buf.getvalue())


def timed(fn: Callable[[], T], repeat: int = 1) -> tuple[float, T]:
    """Best wall time of `repeat` runs (the machine may be shared) and a result."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def warm(paths: list[Path]) -> None:
    """Bring the files' first 64 KiB into the page cache: time parsing, not disk."""
    for path in paths:
        with open(path, "rb") as fh:
            fh.read(65536)


def ours(paths: list[Path]) -> dict[str, CaptureDate]:
    return {str(p): capture_date(p) for p in paths}


def exifread_only(paths: list[Path]) -> int:
    found = 0
    for path in paths:
        with open(path, "rb") as fh:
            tags = exifread.process_file(fh, details=False, extract_thumbnail=False)
        found += "EXIF DateTimeOriginal" in tags
    return found


def exiftool_plain(folder: Path) -> int:
    """Exactly the command of the requirement; returns how many dates it printed."""
    command = ["exiftool", "-r", "-p", "$DateTimeOriginal", str(folder)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return len(out.stdout.splitlines())


def exiftool_dates(folder: Path) -> dict[str, str]:
    """exiftool's DateTimeOriginal by path (untimed; for the comparison)."""
    template = "$Directory/$FileName\t$DateTimeOriginal"
    command = ["exiftool", "-r", "-p", template, str(folder)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line)


def agrees(our: dict[str, CaptureDate], theirs: dict[str, str]) -> bool:
    """Same date wherever exiftool found one (from EXIF or XMP; its offset and
    fraction are not compared); no embedded date where it found none."""
    for path, found in our.items():
        expected = theirs.get(path)
        if expected is None:
            if found.source in ("exif", "xmp"):
                return False
        elif found.when.strftime(EXIF_FORMAT) != expected[:19]:
            return False
    return True


def generate(
    folder: Path, n: int, size: str, use_corpus: bool, xmp_frac: float
) -> float:
    if use_corpus:
        from bench.corpus import generate as generate_corpus

        corpus = folder / "corpus"
        return timed(lambda: generate_corpus(corpus, n=n, xmp_frac=xmp_frac))[0]
    width, height = (int(v) for v in size.split("x"))
    return timed(lambda: write_jpegs(folder, n, (width, height), xmp_frac))[0]


def report(folder: Path, repeat: int) -> bool:
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    n = len(paths)
    mean_kib = sum(p.stat().st_size for p in paths) / n / 1024
    print(f"{n} JPEGs, {mean_kib:.0f} KiB each on average, in {folder}")
    print(f"  best of {repeat} runs each, page cache warm")
    warm(paths)
    our_s, our_dates = timed(lambda: ours(paths), repeat)
    er_s, _ = timed(lambda: exifread_only(paths), repeat)
    et_s, et_count = timed(lambda: exiftool_plain(folder), repeat)
    agree = agrees(our_dates, exiftool_dates(folder))
    sources = Counter(found.source for found in our_dates.values())
    print(f"  capture_date   : {our_s:7.3f} s  {our_s / n * 1e6:7.1f} us/file")
    print(f"  exifread alone : {er_s:7.3f} s  {er_s / n * 1e6:7.1f} us/file")
    print(f"  exiftool -r -p : {et_s:7.3f} s  {et_s / n * 1e6:7.1f} us/file")
    print(f"  ratio exiftool / capture_date = {et_s / our_s:.0f}x")
    print(f"  ratio exifread / capture_date = {er_s / our_s:.1f}x")
    print(f"  exiftool printed {et_count} dates; our sources: {dict(sources)}")
    print(f"  dates identical to exiftool's: {agree}")
    return agree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", default="1024x768", help="image WxH")
    parser.add_argument("--keep", type=Path, help="write the files here, keep them")
    parser.add_argument("--corpus", action="store_true", help="use bench/corpus.py")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs")
    parser.add_argument(
        "--xmp-frac",
        type=float,
        default=0.05,
        help="share of edited exports whose capture date is only in XMP",
    )
    args = parser.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-dates-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        seconds = generate(folder, args.n, args.size, args.corpus, args.xmp_frac)
        print(f"generated in {seconds:.1f} s")
        return 0 if report(folder, args.repeat) else 1
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
