"""Drawings and uploads -> 28x28 uint8 images that look like KMNIST samples (numpy, Pillow, scipy.ndimage)."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError
from scipy import ndimage, special

from .errors import InputError

SIZE = 28  # KMNIST images are SIZE x SIZE

# What KMNIST looks like, measured on the 8,000 train images of the kmnist-subset folder
# (real KMNIST images). Pixels > 32 define the bounding box; pixels > 128 are stroke. The figures
# that only the tests compare outputs with (centre of mass, stroke width and ink ranges) are
# named in tests/drawing_support.py; tests/test_drawing.py re-measures them all on the images.
#
# Frame fill: the bounding-box long side is 28 px at the median and at the 5th percentile
# (mean 27.9); 99 % of the glyphs touch the frame border. KMNIST scales every glyph, keeping
# its aspect ratio, until its long side fills the whole frame: there is no MNIST-style 20 px
# box. The short side is spread wide: p5 12, median 20, p95 28 px.
KMNIST_BBOX_LONG_SIDE = 28
# Centring: the bounding-box centre is 13.5 px on both axes at the median (p5..p95 13..14),
# while the centre of mass wanders (y p5..p95 11.3..16.0, x 10.9..15.3). KMNIST centres the
# box, not the mass: centring the mass of a glyph that fills the frame would push part of it
# out of the frame.
KMNIST_BBOX_CENTRE = 13.5
# Stroke width (`_min_runs` below): per image, the mean over stroke pixels of
# min(horizontal run, vertical run); over the images p5 1.93, p25 2.57, median 3.09,
# p75 3.69, p95 4.80 px. The pipeline re-draws pens into the interquartile range (_STROKE_CLAMP).
# Ink: sum of pixels / 255 per image, p5 72, median 139, p95 239; 18 % of pixels are > 128
# and 32 % are > 0 (medians): strokes carry a grey halo about a pixel wide (_HALO_SIGMA). 4.6 %
# of pixels are 255 and the mean of pixels > 64 is 197: stroke cores are bright but rarely
# flat (_SATURATED_PERCENTILE).

# Pipeline constants, tuned on the round trip of real images and on PIL-drawn canvas strokes.
_INK_MIN_CONTRAST = 0.15  # ink must stand this far (of full scale) above the background, else blank
_FULL_PERCENTILE = 75  # of clearly inked pixels: this level and above is full ink (pencil, faint brush)
_BBOX_LEVEL = 64  # of 255: faint strokes still count for the bounding box
_MAX_CROP = 128  # a larger ink crop is reduced first: as fine as the work scale, and fast
_SUPERSAMPLE = 4  # strokes are re-drawn at 4 x 28 px, then area-averaged: anti-aliased edges
_WORK = SIZE * _SUPERSAMPLE
_STROKE_CLAMP = (2.57, 3.69)  # KMNIST's p25..p75: a pen outside is re-drawn to the nearer end
_BINARY_LEVEL = 0.5  # a pen that is re-drawn starts from the work image above this
_MAX_UPSCALE = 1.25  # a glyph smaller than the work frame (a dot) grows at most 1.25x more
_HALO_SIGMA = 0.4  # px at 28: the final blur, KMNIST's soft grey edge
_SATURATED_PERCENTILE = 75  # of stroke pixels: KMNIST has 4.6 % of pixels at 255 and 18 % > 128
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 weights, as Pillow's "L"

UPLOAD_FORMATS = ("PNG", "JPEG")
# Magic numbers of files people upload by mistake, to name them in the error.
_KNOWN_MAGIC = (
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"RIFF", "a WebP (RIFF) file"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"%PDF", "a PDF document"),
    (b"<svg", "an SVG drawing"),
    (b"<?xml", "an XML/SVG file"),
)


def preprocess_canvas(rgba: np.ndarray) -> np.ndarray | None:
    """Turn a canvas drawing (or a decoded upload) into a KMNIST-like 28x28 image.

    The contract is the (H, W, 4) RGBA array of streamlit-drawable-canvas: white ink on a
    black or transparent background. Also accepted: (H, W) grey, (H, W, 1) grey, (H, W, 2)
    grey + alpha, (H, W, 3) RGB. Values are 0..255 for integer dtypes, 0..1 for bool and for
    floats whose maximum is <= 1, else 0..255 (clipped); NaN counts as 0.

    Ink is luminance weighted by alpha. The background is judged from the border ring: on an
    opaque light background (a scan of dark ink on paper) the image is inverted so that ink
    is bright; on a transparent one, ink is whatever the opaque pixels are. The background
    level is subtracted and the ink stretched to full scale.

    Then, as KMNIST was made: crop to the ink's bounding box, scale keeping the aspect ratio
    until the long side fills all 28 px, centre the bounding box (KMNIST centres the box, not
    the mass). On the way the strokes are re-drawn (isotropic erosion or dilation at 4x) so
    that the pen width lands in KMNIST's interquartile range, whatever pen and drawing size
    the user chose. A dot or a filled blob, which has no extent beyond its own pen, becomes
    one pen-sized dot in the centre rather than a frame-filling square.

    Args:
        rgba: the image, any size of at least 1x1.

    Returns:
        (28, 28) uint8, white glyph on black, or None when nothing is drawn: every pixel the
        background colour (all black, all white, all transparent, a single colour).

    Raises:
        InputError: the array is not an image (wrong ndim or channel count, empty,
            non-numeric dtype).
    """
    found = _ink_map(rgba)
    if found is None:
        return None
    ink, levels = found  # (H, W) uint8 bright ink on 0; (256,) uint8 table stretching it to 0..255
    # The box of the stretched ink above _BBOX_LEVEL (faint strokes count too), found on the raw
    # ink: `levels` never falls, so that is the raw ink at or above the first level over it.
    box = _bbox(ink >= np.argmax(levels > _BBOX_LEVEL))
    crop = Image.fromarray(np.take(levels, ink[box]))  # "L", the ink's bounding box at full contrast
    if max(crop.size) > _MAX_CROP:
        f = _MAX_CROP / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * f)), max(1, round(crop.height * f))), Image.Resampling.BOX)
    stroke = np.asarray(crop)  # (h, w) uint8
    runs = _min_runs(stroke > min(127, int(stroke.max()) // 2))  # (n,) px, one per stroke pixel
    width, thin = float(runs.mean()), _percentile(runs, 10)

    # Scale so that the strokes' centre lines plus one KMNIST-wide pen fill the frame.
    lo, hi = (w * _SUPERSAMPLE for w in _STROKE_CLAMP)
    core = max(crop.size) - width  # the glyph without its pen
    if core < width:
        # A dot or filled blob has no shape to fill the frame with: it becomes one pen-sized dot.
        target = (lo + hi) / 2
        scale = target / width
    else:
        target = min(max(width * _WORK / max(crop.size), lo), hi)  # this pen, clamped to KMNIST's
        scale = (_WORK - target) / core
    work_size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    work = np.asarray(crop.resize(work_size, Image.Resampling.BILINEAR), dtype=np.float32) / 255  # (h, w)
    work = _restroke(work, width * scale, thin * scale, target)  # (h, w) float32 0..1

    rows, cols = _bbox(work > min(_BBOX_LEVEL / 255, float(work.max()) / 2))  # the re-drawn glyph's box
    h, w = rows.stop - rows.start, cols.stop - cols.start
    f = min(KMNIST_BBOX_LONG_SIDE / max(h, w), _MAX_UPSCALE / _SUPERSAMPLE)  # < 1: always a reduction
    # The frame is a window of SIZE / f work px around the box, area-averaged down to SIZE px. It is
    # placed to a fraction of a pixel, so the box centre lands on KMNIST's whatever the glyph's
    # width: rounding the width to whole pixels would shift a glyph by half a pixel at random.
    view = SIZE / f
    # A margin of zeros (Pillow's crop pads with them) keeps the window inside the image;
    # KMNIST_BBOX_CENTRE is the frame's centre, so the window reaches as far on each side.
    dy, dx = (math.ceil((view - n) / 2) + 1 for n in (h, w))
    frame = Image.fromarray(work).crop((cols.start - dx, rows.start - dy, cols.stop + dx, rows.stop + dy))  # "F"
    top, left = dy + h / 2 - (KMNIST_BBOX_CENTRE + 0.5) / f, dx + w / 2 - (KMNIST_BBOX_CENTRE + 0.5) / f
    out = np.asarray(frame.resize((SIZE, SIZE), Image.Resampling.BOX, box=(left, top, left + view, top + view)))
    out = ndimage.gaussian_filter(out, _HALO_SIGMA, mode="constant")  # zero padding: black beyond the frame
    brightest = float(out.max())
    if brightest <= 0:
        return None
    # As in KMNIST, about a quarter of the stroke pixels (> half the maximum) come out at 255.
    full = _percentile(out[out > brightest / 2], _SATURATED_PERCENTILE)
    return np.round(np.clip(out / full, 0, 1) * 255).astype(np.uint8)


def decode_upload(data: bytes, *, max_bytes: int = 2_000_000, max_pixels: int = 4096 * 4096) -> np.ndarray:
    """Decode an uploaded PNG or JPEG into the RGBA array that `preprocess_canvas` takes.

    The pixel count is checked from the header before anything is decoded, so a small file
    that unpacks to gigabytes (a decompression bomb) is refused cheaply. EXIF rotation is
    applied; palette, grey, grey + alpha, 16-bit and CMYK images are all converted.

    Args:
        data: the uploaded file's bytes.
        max_bytes: largest accepted file size.
        max_pixels: largest accepted width x height.

    Returns:
        (H, W, 4) uint8 RGBA.

    Raises:
        InputError: empty or too large a file, not a PNG or JPEG, too many pixels, or a
            damaged image; one line saying which.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError(f"an upload must be bytes, got {type(data).__name__}: pass the file's contents")
    data = bytes(data)
    if not data:
        raise InputError("the uploaded file is empty: upload a PNG or JPEG image")
    if len(data) > max_bytes:
        raise InputError(
            f"the uploaded file is {len(data):,} bytes, over the {max_bytes:,}-byte limit: upload a smaller PNG or JPEG"
        )
    too_big = f"the uploaded image has too many pixels to decode safely: upload one of at most {max_pixels:,} pixels"
    # The header's pixel count is checked below before decoding, so no process-wide warnings
    # filter is needed (it would not be thread-safe under Streamlit's sessions).
    try:
        img = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)  # reads the header only
    except UnidentifiedImageError:
        what = _describe(data)
        raise InputError(f"the uploaded file is {what}, not a PNG or JPEG: upload a PNG or JPEG") from None
    except Image.DecompressionBombError:
        raise InputError(too_big) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"the uploaded image is damaged ({e}): re-save it as PNG and upload it again") from None
    with img:
        kind, (width, height) = img.format, img.size
        if width * height > max_pixels:
            raise InputError(
                f"the uploaded image is {width:,}x{height:,} = {width * height:,} pixels, over the "
                f"{max_pixels:,}-pixel limit: upload a smaller PNG or JPEG"
            )
        try:
            img.load()
            return _to_rgba(ImageOps.exif_transpose(img))  # phone photos carry their rotation in EXIF
        except Image.DecompressionBombError:
            raise InputError(too_big) from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise InputError(f"the uploaded {kind} is damaged ({e}): re-save it and upload it again") from None


def _ink_map(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Validate any image array; (H, W) uint8 ink, bright on 0, and a (256,) table stretching it; None if blank."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(
            f"not an RGBA image: expected an (H, W, 4) array (or (H, W) grey, (H, W, 3) RGB), got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"not an image: the array is empty, shape {arr.shape}; draw something or upload an image")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
    elif np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8:
        arr = np.clip(arr, 0, min(255, np.iinfo(arr.dtype).max)).astype(np.uint8)  # int8 cannot even hold 255
    elif np.issubdtype(arr.dtype, np.floating):
        x = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        full = 255 if x.max() <= 1 else 1  # 0..1 floats, else 0..255
        arr = np.round(np.clip(x, 0, 255 / full) * full).astype(np.uint8)  # clipped first: no overflow
    elif arr.dtype != np.uint8:
        raise InputError(f"not an image: expected numeric pixel values, got dtype {arr.dtype} with shape {arr.shape}")

    channels = arr.shape[2]
    img = Image.fromarray(np.ascontiguousarray(arr[..., 0] if channels == 1 else arr))  # L, LA, RGB or RGBA
    luma = img.convert("L") if channels >= 3 else img.getchannel(0)
    alpha = img.getchannel("A") if channels in (2, 4) else None
    ring = _ring(arr).astype(np.float32) / 255  # (n, C): the border decides what is background
    ring_luma = ring[:, :3] @ _LUMA if channels >= 3 else ring[:, 0]  # (n,)
    ring_alpha = ring[:, -1] if alpha is not None else np.ones_like(ring_luma)  # (n,)
    # The border's median light level, dark level and opacity, in one call: np.median's overhead,
    # not its arithmetic, is what it costs.
    light, dark, opacity = np.median([ring_luma * ring_alpha, (1 - ring_luma) * ring_alpha, ring_alpha], axis=1)
    if opacity < 0.5:
        # Transparent background: the ink is the opaque part, dark if most of it is dark, else bright.
        opaque = np.asarray(alpha) > 127  # (H, W) bool
        dark_ink = 2 * np.count_nonzero(opaque & (np.asarray(luma) < 128)) > np.count_nonzero(opaque)
    else:
        dark_ink = float(light) > 0.5  # light paper, dark ink
    ink = ImageOps.invert(luma) if dark_ink else luma
    if alpha is not None and arr[..., -1].min() < 255:  # not on an opaque canvas, where it changes nothing
        ink = ImageChops.multiply(ink, alpha)  # transparent pixels are no ink

    # Subtract the background (grey paper, JPEG noise) and stretch the ink to full scale.
    background = round(255 * float(dark if dark_ink else light))
    peak = ink.getextrema()[1]
    if peak - background < _INK_MIN_CONTRAST * 255:
        return None
    # Full scale is a high percentile of the clearly inked pixels, not the maximum: a few dark
    # dots must not leave a faint (pencil, light brush) glyph below the stroke threshold.
    hist = np.asarray(ink.histogram(), dtype=np.int64)[:256]  # (256,) pixel counts
    floor = math.ceil(background + 0.25 * (peak - background))
    cumulative = np.cumsum(hist[floor:])
    full = floor + int(np.searchsorted(cumulative, cumulative[-1] * _FULL_PERCENTILE / 100))
    full = max(full, background + 1)
    levels = np.clip((np.arange(256) - background) * (255 / (full - background)), 0, 255)
    return np.asarray(ink), np.round(levels).astype(np.uint8)


def _ring(a: np.ndarray) -> np.ndarray:
    """The border pixels of an (H, W, ...) array: (n, ...)."""
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]]) if a.shape[0] > 1 else a[0]


def _bbox(inked: np.ndarray) -> tuple[slice, slice]:
    """Bounding box (rows, columns) of the True pixels of a 2-D bool mask that has some."""
    rows = np.flatnonzero(inked.any(axis=1))
    cols = np.flatnonzero(inked.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _percentile(a: np.ndarray, q: int) -> float:
    """The q-th percentile of a 1-D array, as np.percentile(a, q, method="lower").

    One np.partition: np.percentile's Python overhead, not its partition, made the two calls in
    preprocess_canvas cost about 0.4 ms of its 2-3 ms (measured side by side on canvas drawings).
    """
    k = (a.size - 1) * q // 100
    return float(np.partition(a, k)[k])


def _min_runs(mask: np.ndarray) -> np.ndarray:
    """Per True pixel of a 2-D bool mask, min(horizontal, vertical) run length, in row-major order."""
    across = _run_lengths(mask)
    down = np.zeros(mask.shape, dtype=np.int32)
    down.T[mask.T] = _run_lengths(mask.T)  # the transpose's runs are the columns
    return np.minimum(across, down[mask])


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """Per True pixel of a 2-D bool mask, the length of its horizontal run, in row-major order."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask  # a False column each side: runs never wrap into the next row
    edges = np.diff(padded.ravel())
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    # Runs appear in row-major order, as do the mask's True pixels, so repeat each length.
    return np.repeat(lengths, lengths)


def _restroke(work: np.ndarray, width: float, thin: float, target: float) -> np.ndarray:
    """Re-draw 0..1 strokes of mean `width` (p10 `thin`) at width `target`; (h, w) float32 0..1."""
    change = (target - width) / 2  # > 0 grows every edge, < 0 shrinks it
    # Shrinking by d deletes strokes thinner than 2d: keep the thinnest tenth at least lo / 2 wide.
    change = max(change, -(thin - _STROKE_CLAMP[0] * _SUPERSAMPLE / 2) / 2, -(width - 1) / 2)
    if abs(change) < 0.5:
        return work  # the pen is already KMNIST's: keep its greys
    # A Gaussian blur then a threshold moves every edge by the same distance in every direction
    # (a soft, isotropic dilation or erosion); the threshold is the blurred band's value at the
    # new edge, for a band of the mean width: the normal CDF between the band's two edges.
    sigma = max(1.0, abs(change) / 2)
    pen = work > min(_BINARY_LEVEL, float(work.max()) / 2)  # (h, w) bool
    if change > 0:
        pen = np.pad(pen, math.ceil(change) + 1)  # room to grow
    blurred = ndimage.gaussian_filter(pen.astype(np.float32), sigma, mode="constant")  # zeros beyond the edge
    half = width / 2
    edge = half + change
    shape = blurred > special.ndtr((edge + half) / sigma) - special.ndtr((edge - half) / sigma)
    if not shape.any():  # a blob thinner than the estimate: keep its brightest part
        shape = blurred >= float(blurred.max()) * 0.75
    return shape.astype(np.float32)


def _to_rgba(img: Image.Image) -> np.ndarray:
    """Any decoded Pillow image -> (H, W, 4) uint8 RGBA; 16/32-bit grey is scaled, not clipped."""
    if img.mode.startswith("I") or img.mode == "F":
        grey = np.asarray(img, dtype=np.float64)  # (H, W)
        top = 65535.0 if img.mode.startswith("I;16") or grey.max() > 255 else 255.0
        img = Image.fromarray(np.round(np.clip(grey, 0, top) * (255 / top)).astype(np.uint8))
    return np.asarray(img.convert("RGBA"))


def _describe(data: bytes) -> str:
    """Name a non-PNG/JPEG upload from its first bytes, for the error message."""
    head = data[:16].lstrip()
    for magic, name in _KNOWN_MAGIC:
        if head.startswith(magic):
            return name
    if all(32 <= b < 127 or b in b"\t\r\n" for b in data[:512]):
        return "text"
    return "unrecognised binary data"
