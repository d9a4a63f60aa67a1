"""Test-only KMNIST figures and helpers for the drawing tests: what outputs are compared with, and test drawings."""

import numpy as np
from PIL import Image
from scipy import ndimage

from kmnist_core.errors import InputError

# What KMNIST looks like, measured on the 8,000 train images of the kmnist-subset folder
# (real KMNIST images) as told in kmnist_core/drawing.py, which keeps the figures its pipeline
# uses; test_kmnist_constants_match_the_real_images re-measures these. Pixels > 128 are stroke.
KMNIST_CENTRE_OF_MASS = (13.86, 13.32)  # (y, x) medians; KMNIST centres the bounding box, not this
# Stroke width (`stroke_width` below): per image, the mean over stroke pixels of
# min(horizontal run, vertical run); over the images median 3.09 px.
KMNIST_STROKE_WIDTH = 3.09
KMNIST_STROKE_WIDTH_RANGE = (1.93, 4.80)  # p5, p95
# Ink: sum of pixels / 255 per image, median 139.
KMNIST_INK_MASS_RANGE = (72.0, 239.0)  # p5, p95

# Structuring elements that connect a pixel to its row neighbours only, or its column neighbours only.
_ROW = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=bool)
_COLUMN = _ROW.T


def stroke_width(img: np.ndarray, threshold: int = 128) -> float:
    """The stroke width measure used for KMNIST_STROKE_WIDTH, for comparing outputs with KMNIST.

    Args:
        img: (H, W) image, bright ink.
        threshold: pixels above it are stroke.

    Returns:
        The mean over stroke pixels of min(horizontal run, vertical run), in px; 0.0 if no
        pixel is above the threshold.
    """
    mask = np.asarray(img) > threshold
    if not mask.any():
        return 0.0
    # Each run is one labelled component; a pixel's run length is the size of its component.
    across, _ = ndimage.label(mask, structure=_ROW)  # (H, W) int32, 0 off the stroke
    down, _ = ndimage.label(mask, structure=_COLUMN)
    runs = np.minimum(np.bincount(across.ravel())[across[mask]], np.bincount(down.ravel())[down[mask]])
    return float(runs.mean())


def enlarge_to_canvas(img28: np.ndarray, size: int = 280) -> np.ndarray:
    """Draw a KMNIST image as streamlit-drawable-canvas would hold it: white ink on opaque black.

    Args:
        img28: (28, 28) uint8 KMNIST image (any 2-D uint8 image works).
        size: side of the square canvas in pixels.

    Returns:
        (size, size, 4) uint8 RGBA; grey levels become grey ink, alpha is 255 everywhere.

    Raises:
        InputError: img28 is not a non-empty 2-D uint8 array, or size < 1.
    """
    img28 = np.asarray(img28)
    if img28.ndim != 2 or img28.size == 0 or img28.dtype != np.uint8:
        raise InputError(
            f"expected a 2-D uint8 image such as a (28, 28) KMNIST sample, got {img28.dtype} shape {img28.shape}"
        )
    if size < 1:
        raise InputError(f"canvas size must be at least 1 pixel, got {size}")
    grey = np.asarray(Image.fromarray(img28).resize((size, size), Image.Resampling.BICUBIC))  # (size, size) uint8
    rgba = np.empty((size, size, 4), dtype=np.uint8)
    rgba[..., :3] = grey[..., None]
    rgba[..., 3] = 255
    return rgba
