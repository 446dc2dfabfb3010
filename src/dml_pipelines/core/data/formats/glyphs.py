"""``glyphs``: a synthetic, deterministic glyph dataset (docs/datasets.md#glyphs).

Classes are single characters (Latin letters, digits, Greek letters, punctuation,
symbols) rendered with Pillow from the DejaVu faces bundled with matplotlib
(``matplotlib.get_data_path()/fonts/ttf``; Sans, Sans Mono and Serif families in
regular, bold, oblique and bold-oblique; the ``Display`` faces are excluded). No
system fonts and no network are used.

Pipeline:

1. Candidates in a fixed order (Latin, digits, Greek, ASCII punctuation, symbols).
   A candidate needs a cmap entry in >= 3 faces (checked with fontTools, which
   matplotlib depends on, so a missing glyph never renders as ``.notdef``).
2. Look-alike rejection: every candidate is rendered in DejaVu Sans at the nominal
   size, centred, binarised (> 127); it is rejected if its IoU with an already
   accepted class exceeds ``max_iou``. The first of a look-alike group in candidate
   order is kept (Latin ``A`` over Greek ``Α``).
3. A seeded shuffle of the accepted classes; the first ``num_classes`` are used,
   labelled 0..N-1 in shuffled order; the first ``N // 2`` are train, the rest test.
4. Each image: a random face containing the glyph; a font size within
   ``size_jitter`` of nominal; the ink is centred, then a random affine transform
   (rotation, shear, scale, translation; rendered at 2x and box-reduced), shrunk or
   shifted if needed so the ink stays inside the canvas; a stroke-width change of
   ``u ~ U(-stroke_px, stroke_px)`` pixels (a fractional blend with a 3x3
   max-/min-filtered copy: dilation for u > 0, erosion for u < 0); then Gaussian
   noise with a per-image sigma ``s * contrast``, ``s ~ U(noise_std_range)``, and
   clipping to [0, 255]. Ink is white (255) on black (0); contrast = 255.

Difficulty defaults (``noise_std_range`` (0.05, 0.20), ``stroke_px`` 0.5) are
calibrated, not the spec's illustrative (0.05, 0.30): see ``CALIBRATION`` and
``benchmarks/calibrate_glyphs.py``.

Randomness comes only from ``numpy.random.default_rng(seed)``. The same seed,
matplotlib version and parameters give byte-identical PNGs.

``glyphs_tune`` (``read_tune``; docs/datasets.md#glyphs_tune) is the same
pipeline over another font set (``FONT_SETS``: STIX General, and Computer Modern
for letters and digits only), seed 1, without the characters of the ``glyphs``
test split: the set defaults are chosen on, never the reported checks.
"""

from __future__ import annotations

import functools
import hashlib
import math
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from dml_pipelines.core.data.formats import READERS
from dml_pipelines.core.data.formats._embedded import (
    finish_embedded,
    prepare_root,
    reusable,
    write_manifest,
    write_png,
)

FACES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
)
REFERENCE_FACE = "DejaVuSans.ttf"
MIN_FACES = 3
TUNE_FACES = (
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
    "cmb10.ttf",
)
TUNE_REFERENCE_FACE = "STIXGeneral.ttf"
ALNUM = frozenset(map(ord, string.ascii_letters + string.digits))
"""The characters the Computer Modern faces (matplotlib's BaKoMa ``cm*10.ttf``)
are used for: their cmaps also list punctuation and symbol code points, but those
slots hold other glyphs (TeX's OT1 layout: ``<`` draws ``¡``, ``\\`` draws ``“``)."""


@dataclass(frozen=True)
class FontSet:
    """The faces one embedded glyph dataset renders from."""

    faces: tuple[str, ...]
    reference: str
    """The face of the look-alike check (``reference_mask``)."""
    only: tuple[tuple[str, frozenset[int]], ...] = ()
    """(face, code points): faces used for these characters only."""


FONT_SETS = {
    "glyphs": FontSet(FACES, REFERENCE_FACE),
    "glyphs_tune": FontSet(
        TUNE_FACES,
        TUNE_REFERENCE_FACE,
        tuple((f, ALNUM) for f in TUNE_FACES if f.startswith("cm")),
    ),
}
SYMBOLS = (
    "¡¢£¤¥¦§©«¬®°±¶·»¿×÷ßæøœðþłđ†‡•…‰‹›€™←↑→↓↔↕∂∆∏∑−√∞∩∪∫≈≠≡≤≥⊂⊃⊕⊗⌂□■▲►▼◄○●◊☺☼♀♂♠♣♥♦♪♫"
)
NOMINAL_SIZE = 0.6
"""Nominal font size (pixels per em) as a fraction of ``image_size``."""
SUPERSAMPLE = 2
MARGIN = 1
"""Pixels kept free at each border of the final image."""

DEFAULTS: dict[str, Any] = {
    "num_classes": 120,
    "images_per_class": 40,
    "image_size": 32,
    "seed": 0,
    "max_iou": 0.9,
    "noise_std_range": (0.05, 0.20),
    "stroke_px": 0.5,
    "size_jitter": 0.15,
    "rotation_deg": 15.0,
    "shear_deg": 10.0,
    "scale_range": (0.85, 1.15),
    "translate": 0.10,
}
CALIBRATION = (
    "contrastive_c1 baseline (small CNN, 64-d, batch 16x4, Adam lr 1e-3, 20 epochs, "
    "small augmentation), test leave-one-out cosine on 60 classes x 40 images, "
    "measured at the DEFAULTS (noise_std_range (0.05, 0.20), stroke_px 0.5) with "
    "matplotlib 3.11.2, torch 2.14.1, CPU: seed 0: untrained R@1 0.1437, trained "
    "R@1 0.9058, MAP@R 0.5561; seed 1: untrained R@1 0.1742, trained R@1 0.8867, "
    "MAP@R 0.5239. Command: python benchmarks/calibrate_glyphs.py --seeds 0 1 "
    "--noise 0.05 0.20 --stroke 0.5 (model seed = glyphs seed). Spec range "
    "(0.05, 0.30) with stroke_px 1.0 gave R@1 0.6737 (seed 0); (0.02, 0.15) with "
    "stroke_px 0.5 gave 0.9300 (seed 0)."
)
"""Measured difficulty of the defaults (docs/datasets.md#glyphs, "Difficulty"), copied
into every manifest."""
TUNE_DEFAULTS: dict[str, Any] = {
    **DEFAULTS,
    "num_classes": 100,
    "seed": 1,
    "exclude_glyphs_test": True,
}
"""``glyphs_tune``: the difficulty settings of ``glyphs``, other faces
(``FONT_SETS``), seed 1, 100 of the classes left once the ``glyphs`` test
characters are removed (115 remain with matplotlib 3.11)."""
TUNE_NOTE = (
    "glyphs_tune: for choosing defaults on its validation classes only; never "
    "used for the reported learning checks (docs/datasets.md#glyphs_tune)"
)
READER_DEFAULTS = {"glyphs": DEFAULTS, "glyphs_tune": TUNE_DEFAULTS}


def candidates() -> list[str]:
    """Candidate characters in acceptance order (Latin, digits, Greek, punctuation,
    symbols)."""
    greek_upper = [chr(c) for c in range(0x391, 0x3AA) if c != 0x3A2]
    greek_lower = [chr(c) for c in range(0x3B1, 0x3CA)]
    chars = (
        list(string.ascii_uppercase + string.ascii_lowercase + string.digits)
        + greek_upper
        + greek_lower
        + list(string.punctuation + SYMBOLS)
    )
    return list(dict.fromkeys(chars))


def font_dir() -> Path:
    """matplotlib's bundled TrueType folder (``get_data_path()/fonts/ttf``)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def face_cmaps(dataset: str = "glyphs") -> dict[str, frozenset[int]]:
    """Code points each face of ``dataset``'s font set maps to a glyph (fontTools
    cmap; restricted to ``FontSet.only`` for the faces listed there).

    Raises:
        ValueError: fewer than ``MIN_FACES`` faces are found.
    """
    from fontTools.ttLib import TTFont

    fonts = FONT_SETS[dataset]
    only = dict(fonts.only)
    out = {}
    for name in fonts.faces:
        path = font_dir() / name
        if path.is_file():
            with TTFont(path, lazy=True) as font:
                cmap = frozenset(font.getBestCmap())
            out[name] = cmap & only[name] if name in only else cmap
    if len(out) < MIN_FACES or fonts.reference not in out:
        raise ValueError(
            f"{dataset}.num_classes: only {len(out)} faces found in {font_dir()}; "
            f"need {fonts.reference} and at least {MIN_FACES} of {list(fonts.faces)}"
        )
    return out


@functools.cache
def _font(face: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / face), size)


def _ink(char: str, face: str, size: int) -> np.ndarray:
    """The glyph's ink, cropped to its bounding box, as a float (h, w) array in
    [0, 1]; empty (0, 0) if nothing is drawn."""
    font = _font(face, size)
    x0, y0, x1, y1 = font.getbbox(char)
    img = Image.new("L", (max(x1 - x0, 1) + 2, max(y1 - y0, 1) + 2))
    ImageDraw.Draw(img).text((1 - x0, 1 - y0), char, font=font, fill=255)
    box = img.getbbox()
    if box is None:
        return np.zeros((0, 0), np.float32)
    return np.asarray(img.crop(box), np.float32) / 255.0


def _place(ink: np.ndarray, size: int, matrix: np.ndarray, shift: np.ndarray):
    """Map ``ink`` onto a ``size`` x ``size`` canvas by ``matrix`` (2x2, about the ink
    centre) and ``shift`` (pixels from the canvas centre), keeping it inside.

    Returns:
        (size, size) float array in [0, 1].
    """
    h, w = ink.shape
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], float) - [w / 2, h / 2]
    mapped = corners @ matrix.T
    extent = mapped.max(0) - mapped.min(0)
    room = size - 2 * MARGIN * SUPERSAMPLE
    fit = min(1.0, room / max(extent.max(), 1e-6))
    matrix = matrix * fit
    mapped = mapped * fit
    centre = (mapped.max(0) + mapped.min(0)) / 2
    half = (mapped.max(0) - mapped.min(0)) / 2
    limit = room / 2 - half
    shift = np.clip(shift + centre, -limit, limit) - centre
    target = np.array([size / 2, size / 2]) + shift
    inv = np.linalg.inv(matrix)
    offset = np.array([w / 2, h / 2]) - inv @ target
    data = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    img = Image.fromarray(np.round(ink * 255).astype(np.uint8))
    out = img.transform(
        (size, size), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR
    )
    return np.asarray(out, np.float32) / 255.0


def reference_mask(
    char: str, image_size: int = 32, face: str = REFERENCE_FACE
) -> np.ndarray:
    """Binarised (ink > 0.5) render of ``char`` in ``face`` (DejaVu Sans) at the
    nominal size, centred, without jitter; (image_size, image_size) bool."""
    s = SUPERSAMPLE
    ink = _ink(char, face, round(NOMINAL_SIZE * image_size * s))
    if ink.size == 0:
        return np.zeros((image_size, image_size), bool)
    canvas = _place(ink, image_size * s, np.eye(2), np.zeros(2))
    small = canvas.reshape(image_size, s, image_size, s).mean((1, 3))
    return small > 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (0 if both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def accept_classes(
    image_size: int = 32, max_iou: float = 0.9, dataset: str = "glyphs"
) -> list[str]:
    """Candidates in >= ``MIN_FACES`` faces of ``dataset``'s font set, look-alikes
    (IoU > ``max_iou`` of the reference render with an earlier accepted class)
    removed, in candidate order."""
    cmaps = face_cmaps(dataset)
    reference = FONT_SETS[dataset].reference
    accepted: list[str] = []
    masks: list[np.ndarray] = []
    for char in candidates():
        if sum(ord(char) in cm for cm in cmaps.values()) < MIN_FACES:
            continue
        if ord(char) not in cmaps[reference]:
            continue
        mask = reference_mask(char, image_size, reference)
        if not mask.any() or any(iou(mask, m) > max_iou for m in masks):
            continue
        accepted.append(char)
        masks.append(mask)
    return accepted


def render(char: str, faces: list[str], rng: np.random.Generator, p: dict):
    """One random instance of ``char`` (see module docstring); (S, S) uint8."""
    size, s = p["image_size"], SUPERSAMPLE
    face = faces[rng.integers(len(faces))]
    jitter = rng.uniform(-p["size_jitter"], p["size_jitter"])
    font_px = max(2, round(NOMINAL_SIZE * size * s * (1 + jitter)))
    rot = math.radians(rng.uniform(-p["rotation_deg"], p["rotation_deg"]))
    shear = math.radians(rng.uniform(-p["shear_deg"], p["shear_deg"]))
    scale = rng.uniform(*p["scale_range"])
    shift = rng.uniform(-p["translate"], p["translate"], 2) * size * s
    stroke = rng.uniform(-p["stroke_px"], p["stroke_px"])
    sigma = rng.uniform(*p["noise_std_range"]) * 255.0
    noise = rng.standard_normal((size, size))

    c, si = math.cos(rot), math.sin(rot)
    matrix = (
        scale * np.array([[c, -si], [si, c]]) @ np.array([[1, math.tan(shear)], [0, 1]])
    )
    canvas = _place(_ink(char, face, font_px), size * s, matrix, shift)
    img = canvas.reshape(size, s, size, s).mean((1, 3))
    img = _stroke(img, stroke)
    out = img * 255.0 + sigma * noise
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _stroke(img: np.ndarray, amount: float) -> np.ndarray:
    """Dilate (amount > 0) or erode (< 0) by |amount| pixels: whole 3x3 max/min
    filter steps, then a blend for the fraction."""
    if amount == 0:
        return img
    filt = ImageFilter.MaxFilter(3) if amount > 0 else ImageFilter.MinFilter(3)
    whole, frac = divmod(abs(amount), 1.0)
    pil = Image.fromarray(img.astype(np.float32))
    for _ in range(int(whole)):
        pil = pil.filter(filt)
    base = np.asarray(pil, np.float32)
    return (1 - frac) * base + frac * np.asarray(pil.filter(filt), np.float32)


def _params(dataset: str = "glyphs", **kw: Any) -> dict[str, Any]:
    p = {**READER_DEFAULTS[dataset], **kw}
    for key in ("noise_std_range", "scale_range"):
        p[key] = [float(v) for v in p[key]]
        if len(p[key]) != 2 or p[key][0] > p[key][1]:
            raise ValueError(f"{dataset}.{key}: expected (low, high), got {p[key]}")
    for key in ("num_classes", "images_per_class", "image_size", "seed"):
        p[key] = int(p[key])
    for key in ("max_iou", "stroke_px", "size_jitter", "rotation_deg", "shear_deg"):
        p[key] = float(p[key])
    p["translate"] = float(p["translate"])
    if "exclude_glyphs_test" in p:
        p["exclude_glyphs_test"] = bool(p["exclude_glyphs_test"])
    if p["num_classes"] < 2 or p["images_per_class"] < 1 or p["image_size"] < 8:
        raise ValueError(
            f"{dataset}.num_classes >= 2, {dataset}.images_per_class >= 1 and "
            f"{dataset}.image_size >= 8 are required, got {p['num_classes']}, "
            f"{p['images_per_class']}, {p['image_size']}"
        )
    return p


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@READERS.register("glyphs")
def read(
    root: str | Path,
    *,
    expected_counts: Any = "default",
    on_missing: str = "raise",
    on_error: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """Materialise the glyph dataset under ``root`` and return its index table.

    Args:
        root: folder for ``images/<label>/<n>.png`` and ``manifest.json``; reused
            when its manifest matches the parameters and the images are intact.
        expected_counts: ``"default"`` (``N // 2 * images_per_class`` train, the rest
            test), a dict split -> count, or ``None``.
        on_missing: accepted for the reader interface; missing images are rendered
            again, never skipped.
        on_error: accepted for the reader interface; the images are written by
            this reader (the cache decode still checks them).
        **options: any key of ``DEFAULTS`` (``num_classes``, ``images_per_class``,
            ``image_size``, ``seed``, ``max_iou``, ``noise_std_range``, ``stroke_px``,
            ``size_jitter``, ``rotation_deg``, ``shear_deg``, ``scale_range``,
            ``translate``).

    Returns:
        The index table; labels 0..N-1, train = 0..N//2-1, test = the rest.

    Raises:
        ValueError: unknown option; too few classes (names ``glyphs.num_classes``);
            count mismatch.
    """
    del on_missing, on_error
    return _read("glyphs", Path(root), expected_counts, options)


@READERS.register("glyphs_tune")
def read_tune(
    root: str | Path,
    *,
    expected_counts: Any = "default",
    on_missing: str = "raise",
    on_error: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """``glyphs_tune``: the glyph set for CHOOSING defaults, never used for the
    reported learning checks (docs/datasets.md#glyphs_tune).

    The same pipeline as ``glyphs`` with other faces and another seed: STIX
    General (regular, bold, italic, bold-italic) for every character and the
    Computer Modern faces (``cmr10``, ``cmss10``, ``cmtt10``, ``cmti10``, ``cmb10``)
    for Latin letters and digits only (``ALNUM``), look-alikes checked in STIX
    General, seed 1, 100 classes; with ``exclude_glyphs_test`` (default) no
    character of the ``glyphs`` TEST split (at its default options) is a class.
    Arguments as ``read``; options: any key of ``TUNE_DEFAULTS``.
    """
    del on_missing, on_error
    return _read("glyphs_tune", Path(root), expected_counts, options)


def glyphs_test_characters() -> set[str]:
    """The classes of the ``glyphs`` test split at ``DEFAULTS`` (no rendering: the
    seeded class shuffle is the first draw of ``_materialise``)."""
    p = _params("glyphs")
    accepted = accept_classes(p["image_size"], p["max_iou"])
    order = np.random.default_rng(p["seed"]).permutation(len(accepted))
    chars = [accepted[i] for i in order[: p["num_classes"]]]
    return set(chars[p["num_classes"] // 2 :])


def _read(
    dataset: str, root: Path, expected_counts: Any, options: dict[str, Any]
) -> pd.DataFrame:
    valid = READER_DEFAULTS[dataset]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"{dataset}: unknown option(s) {unknown}; valid: {list(valid)}"
        )
    p = _params(dataset, **options)
    import matplotlib

    params = {**p, "matplotlib_version": matplotlib.__version__}
    manifest = reusable(root, dataset, params)
    if manifest is None:
        manifest = _materialise(dataset, root, p, params)
    n_train, ipc = p["num_classes"] // 2, p["images_per_class"]
    default = {"train": n_train * ipc, "test": (p["num_classes"] - n_train) * ipc}
    return _table(dataset, root, manifest, p, expected_counts, default)


def _materialise(dataset: str, root: Path, p: dict, params: dict) -> dict:
    accepted = accept_classes(p["image_size"], p["max_iou"], dataset)
    if p.get("exclude_glyphs_test"):
        excluded = glyphs_test_characters()
        accepted = [c for c in accepted if c not in excluded]
    if len(accepted) < p["num_classes"]:
        raise ValueError(
            f"{dataset}.num_classes: {p['num_classes']} requested but only "
            f"{len(accepted)} distinct glyph classes are available"
        )
    rng = np.random.default_rng(p["seed"])
    order = rng.permutation(len(accepted))[: p["num_classes"]]
    chars = [accepted[i] for i in order]
    cmaps = face_cmaps(dataset)
    faces_used = [f for f in FONT_SETS[dataset].faces if f in cmaps]
    prepare_root(root, dataset)
    paths = []
    for label, char in enumerate(chars):
        faces = [f for f in faces_used if ord(char) in cmaps[f]]
        for n in range(p["images_per_class"]):
            rel = f"images/{label:03d}/{n:03d}.png"
            write_png(root, rel, render(char, faces, rng, p))
            paths.append(rel)
    manifest = {
        "dataset": dataset,
        "params": params,
        "seed": p["seed"],
        "matplotlib_version": params["matplotlib_version"],
        "faces": {f: _sha256(font_dir() / f) for f in faces_used},
        "code_points": [ord(c) for c in chars],
        "characters": "".join(chars),
        "num_train_classes": p["num_classes"] // 2,
        "num_accepted_candidates": len(accepted),
        "calibration": CALIBRATION if dataset == "glyphs" else TUNE_NOTE,
        "paths": paths,
    }
    write_manifest(root, manifest)
    return manifest


def _table(
    dataset: str,
    root: Path,
    manifest: dict,
    p: dict,
    expected_counts: Any,
    default: dict,
) -> pd.DataFrame:
    n_train = p["num_classes"] // 2
    paths = manifest["paths"]
    labels = [int(rel.split("/")[1]) for rel in paths]
    splits = ["train" if lab < n_train else "test" for lab in labels]
    return finish_embedded(
        dataset, root, paths, labels, splits, expected_counts, default
    )
