"""Generate a reproducible corpus of photo-like JPEGs for benchmarks and load tests.

`generate()` writes originals (smooth gradients + shapes + sensor-like noise, with EXIF
Make/Model/DateTimeOriginal spread over years; with `xmp_frac`, some as edited exports
whose capture date is only in XMP), exact byte copies in other folders,
resized + recompressed copies, and a few large (~8 MB) JPEGs. The same seed gives the
same bytes. CLI: `python -m bench.corpus DEST [-n 2000] [--seed 0] [--manifest PATH]`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import struct
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageDraw

CAMERAS: tuple[tuple[str, str], ...] = (
    ("Canon", "Canon EOS 80D"),
    ("NIKON CORPORATION", "NIKON D750"),
    ("Apple", "iPhone 12"),
    ("samsung", "SM-G991B"),
    ("Google", "Pixel 7"),
    ("SONY", "ILCE-7M3"),
)
ORIGINAL_DIRS = ("DCIM/100CANON", "DCIM/101NIKON", "Phone/Camera", "Trip 2019", "")
COPY_DIRS = ("Backup/old_phone", "Backup/laptop/Pictures", "Shared/Family")
RESIZED_DIR = "WhatsApp/Media"
DATE_START = datetime(2012, 1, 1)
DATE_SPAN_SECONDS = 12 * 365 * 24 * 3600
NOISE_TILE = 512
APP15_MAX_PAYLOAD = 65533 - 2


@dataclass
class CorpusInfo:
    """What `generate()` wrote; the counts a benchmark checks its results against.

    `exact_copies` and `resized_copies` are (copy, original) pairs. Distinct contents
    (SHA-256) = `total - exact_duplicates`.
    """

    dest: Path
    originals: list[Path] = field(default_factory=list)
    exact_copies: list[tuple[Path, Path]] = field(default_factory=list)
    resized_copies: list[tuple[Path, Path]] = field(default_factory=list)
    big: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)  # also in `originals`
    xmp: list[Path] = field(default_factory=list)  # also in `originals`
    seconds: float = 0.0

    @property
    def files(self) -> list[Path]:
        """Every file written, originals first."""
        return (
            self.originals
            + [c for c, _ in self.exact_copies]
            + [c for c, _ in self.resized_copies]
        )

    @property
    def total(self) -> int:
        return len(self.originals) + len(self.exact_copies) + len(self.resized_copies)

    @property
    def exact_duplicates(self) -> int:
        return len(self.exact_copies)

    @property
    def resized(self) -> int:
        return len(self.resized_copies)

    @property
    def unique(self) -> int:
        """Distinct contents: what a SHA-256 de-duplicator should accept."""
        return self.total - self.exact_duplicates

    def summary(self) -> dict[str, object]:
        return {
            "dest": str(self.dest),
            "total": self.total,
            "unique": self.unique,
            "originals": len(self.originals),
            "exact_duplicates": self.exact_duplicates,
            "resized_copies": self.resized,
            "big_files": len(self.big),
            "bytes": sum(p.stat().st_size for p in self.files),
            "seconds": round(self.seconds, 1),
        }

    def to_json(self) -> str:
        """Summary plus every path (relative to `dest`)."""

        def rel(p: Path) -> str:
            return str(p.relative_to(self.dest))

        doc = dict(self.summary())
        doc["originals_list"] = [rel(p) for p in self.originals]
        doc["exact_copies_list"] = [[rel(c), rel(o)] for c, o in self.exact_copies]
        doc["resized_copies_list"] = [[rel(c), rel(o)] for c, o in self.resized_copies]
        doc["big_list"] = [rel(p) for p in self.big]
        doc["videos_list"] = [rel(p) for p in self.videos]
        doc["xmp_list"] = [rel(p) for p in self.xmp]
        return json.dumps(doc, indent=1)


@dataclass(frozen=True)
class _Job:
    """One original image to render (picklable for the process pool)."""

    path: Path
    seed: int
    index: int
    big: bool
    big_size: int
    grain: float
    span_seconds: int = DATE_SPAN_SECONDS
    widths: tuple[int, int] = (640, 1600)
    xmp: bool = False  # an edited export: the capture date only in XMP


def _exif_bytes(
    rng: np.random.Generator,
    span_seconds: int = DATE_SPAN_SECONDS,
    edited: bool = False,
) -> tuple[bytes, bytes | None]:
    """(EXIF block, XMP packet or None). An edited export keeps Make/Model and
    only IFD0 DateTime (the time of the edit); its capture date is in XMP."""
    make, model = CAMERAS[int(rng.integers(len(CAMERAS)))]
    taken = DATE_START + timedelta(seconds=int(rng.integers(span_seconds)))
    stamp = taken.strftime("%Y:%m:%d %H:%M:%S")
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = make
    exif[ExifTags.Base.Model] = model
    if edited:
        edit = taken + timedelta(days=400, hours=5)
        exif[ExifTags.Base.DateTime] = edit.strftime("%Y:%m:%d %H:%M:%S")
        exif[ExifTags.Base.Software] = "Adobe Photoshop Lightroom Classic 12.0"
        return exif.tobytes(), xmp_packet(taken, edit)
    exif[ExifTags.Base.DateTime] = stamp
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.DateTimeOriginal] = stamp
    sub[ExifTags.Base.DateTimeDigitized] = stamp
    return exif.tobytes(), None


def xmp_packet(taken: datetime, edited: datetime) -> bytes:
    """An XMP packet as Lightroom exports it: capture dates with the camera's
    offset, the edit time, and the 2 KiB of padding editors leave for rewrites."""
    when = taken.strftime("%Y-%m-%dT%H:%M:%S") + ".00+01:00"
    modified = edited.strftime("%Y-%m-%dT%H:%M:%S") + "+01:00"
    return (
        "<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>\n"
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        '    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"\n'
        '    xmlns:exif="http://ns.adobe.com/exif/1.0/"\n'
        '    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"\n'
        f'   xmp:ModifyDate="{modified}"\n'
        f'   xmp:CreateDate="{when}"\n'
        f'   xmp:MetadataDate="{modified}"\n'
        '   xmp:CreatorTool="Adobe Photoshop Lightroom Classic 12.0 (Windows)"\n'
        '   dc:format="image/jpeg"\n'
        f'   photoshop:DateCreated="{when}"\n'
        f'   exif:DateTimeOriginal="{when}"\n'
        '   xmpMM:DocumentID="xmp.did:5b1f0c1e-7a1d-4b4e-9c3f-2f6d1f0a9b11"\n'
        '   crs:Version="15.0" crs:Exposure2012="+0.35" crs:Contrast2012="+12"/>\n'
        " </rdf:RDF>\n</x:xmpmeta>\n" + " " * 2048 + "\n<?xpacket end='w'?>"
    ).encode()


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, 3))
    return r, g, b


def _draw_shapes(img: Image.Image, rng: np.random.Generator) -> None:
    """Soft-edged shapes; none covers the frame, so no image is flat (a flat image's
    pHash is noise and would collide with every other flat image)."""
    draw = ImageDraw.Draw(img)
    w, h = img.size
    for _ in range(int(rng.integers(4, 12))):
        cx, cy = int(rng.integers(w)), int(rng.integers(h))
        rx = int(rng.integers(w // 20, w * 3 // 10 + 1)) + 1
        ry = int(rng.integers(h // 20, h * 3 // 10 + 1)) + 1
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        kind = int(rng.integers(3))
        colour = _random_colour(rng)
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            pts = [
                (
                    cx + int(rng.integers(-rx, rx + 1)),
                    cy + int(rng.integers(-ry, ry + 1)),
                )
                for _ in range(3)
            ]
            draw.polygon(pts, fill=colour)


def render_photo(
    rng: np.random.Generator, size: tuple[int, int], noise: float = 6.0
) -> Image.Image:
    """A photo-like RGB image: smooth gradient, soft shapes, fine grain.

    Drawn at 1/4 scale and upscaled bicubically so edges are soft (a meaningful pHash)
    and rendering stays cheap; the grain gives realistic JPEG sizes.
    """
    w, h = size
    small = (max(8, w // 4), max(8, h // 4))
    grid = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    canvas = Image.fromarray(grid, "RGB").resize(small, Image.Resampling.BICUBIC)
    _draw_shapes(canvas, rng)
    full = np.asarray(canvas.resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    tile = rng.normal(0.0, noise, (NOISE_TILE, NOISE_TILE, 3)).astype(np.int16)
    reps = (-(-h // NOISE_TILE), -(-w // NOISE_TILE), 1)
    grain = np.tile(tile, reps)[:h, :w]
    return Image.fromarray(np.clip(full + grain, 0, 255).astype(np.uint8), "RGB")


def _pad_with_app15(data: bytes, target: int) -> bytes:
    """Insert APP15 segments after SOI until the JPEG is about `target` bytes."""
    missing = target - len(data)
    if missing <= 0:
        return data
    segments = []
    while missing > 4:
        payload = min(APP15_MAX_PAYLOAD, missing - 4)
        segments.append(b"\xff\xef" + struct.pack(">H", payload + 2) + bytes(payload))
        missing -= payload + 4
    return data[:2] + b"".join(segments) + data[2:]


def _render_original(job: _Job) -> None:
    rng = np.random.default_rng([job.seed, job.index])
    if job.big:
        size = (4000, 3000)
        quality = 95
    else:
        w = int(rng.integers(job.widths[0], job.widths[1] + 1))
        size = (w, w * 3 // 4)
        quality = int(rng.integers(85, 96))
    if rng.random() < 0.2:
        size = (size[1], size[0])
    img = render_photo(rng, size, job.grain)
    buf = io.BytesIO()
    exif, xmp = _exif_bytes(rng, job.span_seconds, job.xmp)
    extra = {} if xmp is None else {"xmp": xmp}
    img.save(buf, "JPEG", quality=quality, exif=exif, **extra)
    data = buf.getvalue()
    if job.big:
        data = _pad_with_app15(data, job.big_size)
    job.path.parent.mkdir(parents=True, exist_ok=True)
    job.path.write_bytes(data)


def _render_resized(args: tuple[Path, Path, int, int]) -> None:
    copy, original, seed, k = args
    rng = np.random.default_rng([seed, 1, k])
    with Image.open(original) as img:
        exif = img.info.get("exif", b"")
        scale = float(rng.uniform(0.4, 0.75))
        size = (max(64, round(img.width * scale)), max(64, round(img.height * scale)))
        small = img.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    keep_exif = exif if rng.random() < 0.5 else b""
    copy.parent.mkdir(parents=True, exist_ok=True)
    small.save(copy, "JPEG", quality=int(rng.integers(70, 86)), exif=keep_exif)


def _original_path(dest: Path, rng: np.random.Generator, index: int) -> Path:
    folder = ORIGINAL_DIRS[int(rng.integers(len(ORIGINAL_DIRS)))]
    stem = ("IMG_", "DSC_", "PXL_", "P")[index % 4]
    ext = (".jpg", ".JPG", ".jpeg")[int(rng.integers(3))]
    return dest / folder / f"{stem}{index:05d}{ext}"


def _split(n: int, exact_frac: float, resized_frac: float, big: int) -> tuple[int, ...]:
    exact = round(n * exact_frac)
    resized = round(n * resized_frac)
    originals = n - exact - resized
    if originals < max(1, big):
        raise ValueError(f"n={n} leaves too few originals ({originals})")
    return originals, exact, resized


def generate(
    dest: Path,
    n: int = 2000,
    seed: int = 0,
    exact_copy_frac: float = 0.10,
    resized_frac: float = 0.05,
    big_files: int = 3,
    big_size_mb: float = 8,
    workers: int | None = None,
    grain: float = 6.0,
    span_days: float = 12 * 365,
    widths: tuple[int, int] = (640, 1600),
    videos: int = 0,
    video_mb: float = 4.0,
    xmp_frac: float = 0.0,
) -> CorpusInfo:
    """Write `n` JPEG files under `dest` (which must be empty or absent).

    `n` counts everything: originals + exact copies (`exact_copy_frac * n`) + resized
    copies (`resized_frac * n`). The first `big_files` originals are 4000x3000 q95
    padded to `big_size_mb` MiB. `grain` is the noise sigma (0-255 scale): it sets
    the JPEG entropy (bits per pixel), hence decode cost; `widths` bounds the other
    originals' width. `videos` short MP4s of `video_mb` MiB (a movie header with its
    creation time, then media data) are added as originals. A `xmp_frac` share of
    the (not big) originals are edited exports whose capture date is only in XMP
    (EXIF keeps IFD0 DateTime, the edit time). Uses a process pool of `workers`
    (default: CPUs).
    """
    started = time.monotonic()
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    n_orig, n_exact, n_resized = _split(n, exact_copy_frac, resized_frac, big_files)
    rng = np.random.default_rng(seed)
    big_size = int(big_size_mb * (1 << 20))
    jobs = [
        _Job(
            _original_path(dest, rng, i),
            seed,
            i,
            i < big_files,
            big_size,
            grain,
            int(span_days * 86400),
            tuple(widths),
            i >= big_files and int((i + 1) * xmp_frac) > int(i * xmp_frac),
        )
        for i in range(n_orig)
    ]
    info = CorpusInfo(dest=dest, originals=[j.path for j in jobs])
    info.big = [j.path for j in jobs if j.big]
    info.xmp = [j.path for j in jobs if j.xmp]
    small_originals = [j.path for j in jobs if not j.big] or info.originals
    exact_src = _pick(rng, small_originals, n_exact)
    resized_src = _pick(rng, small_originals, n_resized)
    for k, original in enumerate(exact_src):
        folder = COPY_DIRS[k % len(COPY_DIRS)]
        name = (f"{original.stem} (1){original.suffix}", f"copy_{original.name}")[k % 2]
        info.exact_copies.append((dest / folder / f"{k:04d}" / name, original))
    for k, original in enumerate(resized_src):
        copy = dest / RESIZED_DIR / f"IMG-WA{k:05d}.jpg"
        info.resized_copies.append((copy, original))
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(_render_original, jobs, chunksize=16))
        resize_args = [(c, o, seed, k) for k, (c, o) in enumerate(info.resized_copies)]
        list(pool.map(_render_resized, resize_args, chunksize=8))
    for copy, original in info.exact_copies:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, copy)
    for k in range(videos):
        video = dest / "Phone" / "Camera" / f"VID_{k:05d}.mp4"
        write_mp4(video, rng, int(video_mb * (1 << 20)))
        info.originals.append(video)
        info.videos.append(video)
    info.seconds = time.monotonic() - started
    return info


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def write_mp4(path: Path, rng: np.random.Generator, size: int) -> None:
    """A short MP4 as a phone writes it, for what the pipeline reads: ftyp, a movie
    header carrying the creation time (UTC, seconds since 1904), then media data."""
    taken = DATE_START + timedelta(seconds=int(rng.integers(DATE_SPAN_SECONDS)))
    created = int((taken - datetime(1904, 1, 1)).total_seconds())
    mvhd = struct.pack(">B3xIIII", 0, created, created, 1000, 5000)
    mvhd += struct.pack(">IH10x", 0x00010000, 0x0100) + bytes(60) + b"\0\0\0\2"
    head = _box(b"ftyp", b"isom\0\0\2\0isomiso2mp41")
    head += _box(b"moov", _box(b"mvhd", mvhd))
    media = rng.integers(0, 256, max(0, size - len(head) - 8), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + _box(b"mdat", media.tobytes()))


def _pick(rng: np.random.Generator, paths: Sequence[Path], k: int) -> list[Path]:
    """`k` sources, distinct while there are enough of them."""
    if k <= 0:
        return []
    idx = rng.choice(len(paths), size=k, replace=k > len(paths))
    return [paths[int(i)] for i in idx]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact-copy-frac", type=float, default=0.10)
    parser.add_argument("--resized-frac", type=float, default=0.05)
    parser.add_argument("--big-files", type=int, default=3)
    parser.add_argument("--big-size-mb", type=float, default=8)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--grain", type=float, default=6.0, help="noise sigma")
    parser.add_argument("--manifest", type=Path, help="write paths + counts as JSON")
    args = parser.parse_args(argv)
    info = generate(
        args.dest,
        n=args.n,
        seed=args.seed,
        exact_copy_frac=args.exact_copy_frac,
        resized_frac=args.resized_frac,
        big_files=args.big_files,
        big_size_mb=args.big_size_mb,
        workers=args.workers,
        grain=args.grain,
    )
    if args.manifest:
        args.manifest.write_text(info.to_json())
    json.dump(info.summary(), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
