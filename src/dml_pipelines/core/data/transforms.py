"""Train/test preprocessing presets by name (docs/datasets.md#preprocessing-presets).

A preset is split in two parts:

* the per-image geometric part (``Transforms.train_sample`` / ``test_sample``), run in
  the DataLoader on uint8 (C, H, W) tensors and producing a fixed size. For training
  it splits in two (``training.augment_on: device``): the loader draws the
  parameters and cuts the crop box (``train_region``, no interpolation), the
  training device resizes and flips the packed batch (``train_batch``). Both halves
  draw from the same generator in the same order, so either path gives the same
  parameters for the same seed and, on a CPU, the same pixels;
* the batch part (``Transforms.normalize``), run by the trainer on the training device:
  to float, channel order and scale, mean/std, and (``intra_batch`` train)
  RandomErasing in normalised space.

Crops are taken from the prepared cache's images, which are resized to the cache's
size (shorter side ``resize_shorter``, e.g. 256, or the native size). The ``mlrc``,
``intra_batch`` and ``proxy_anchor`` reference code crops the original image, so the
recipes using them train on the original-size cache (``transforms.source_size:
original``); ``xbm`` resizes to 256 first (``source_size: 256``). The cache trained
on is recorded in the protocol card (``cache_resize_shorter``).

Randomness comes from torch: the global generator (reproducible under
``torch.manual_seed``) or an explicit ``torch.Generator`` passed in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchvision.transforms.v2.functional as F
from torchvision.transforms import InterpolationMode

from dml_pipelines.core.models import bninception
from dml_pipelines.core.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_CONVENTIONS,
)
from dml_pipelines.core.registry import Registry

BILINEAR = InterpolationMode.BILINEAR

TRAIN_PARAMS = 9
"""Length of one sample's augmentation parameters (``Transforms.train_region``)."""

PRESETS: Registry[Callable[[], dict[str, Any]]] = Registry("transforms preset")
"""name -> function returning the preset's ``Transforms`` field values."""


@dataclass(frozen=True)
class Transforms:
    """One preprocessing preset. Build with ``build_transforms``.

    Attributes:
        preset: registered preset name.
        image_size: output side S of train and test images (square); ``None`` keeps
            the input size (``small``).
        resize_size: shorter side the test image is resized to before the centre crop
            (``None``: no resize); a no-op when the cached image already has it.
        resize_before_crop: also resize to ``resize_size`` before the train crop
            (``xbm``).
        geometry: train geometry, ``resized_crop`` or ``affine``.
        scale, ratio: RandomResizedCrop area fraction and aspect (w/h) ranges.
        flip_p: horizontal flip probability.
        degrees, translate, affine_scale: random affine rotation ±degrees,
            translation ±fraction of the size (rounded to whole pixels), scale range.
        fill: affine fill value (0–255).
        max_value: 1.0 scales pixels to [0, 1]; 255.0 keeps 0–255 (``mlrc``).
        bgr: reverse the channel order to BGR before mean subtraction.
        mean, std: per output channel (in output channel order and value scale);
            one value broadcasts over channels.
        erasing_p, erasing_scale, erasing_ratio, erasing_fill: RandomErasing
            (Zhong et al., as in the Intra-Batch code) in normalised space, train
            only: with probability ``erasing_p`` one rectangle of area fraction
            U(erasing_scale) and aspect U(erasing_ratio, 1/erasing_ratio) (up to 100
            attempts to fit) is filled with ``erasing_fill``.
    """

    preset: str
    image_size: int | None = 224
    resize_size: int | None = 256
    resize_before_crop: bool = False
    geometry: str = "resized_crop"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    degrees: float = 0.0
    translate: float = 0.0
    affine_scale: tuple[float, float] = (1.0, 1.0)
    fill: float = 0.0
    max_value: float = 1.0
    bgr: bool = False
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    erasing_p: float = 0.0
    erasing_scale: tuple[float, float] = (0.02, 0.4)
    erasing_ratio: float = 0.3
    erasing_fill: tuple[float, ...] = (0.4914, 0.4822, 0.4465)

    def __post_init__(self) -> None:
        if self.geometry not in ("resized_crop", "affine"):
            raise ValueError(
                f"transforms.geometry: {self.geometry!r} is invalid; "
                "valid: resized_crop, affine"
            )
        for name in ("image_size", "resize_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(
                    f"transforms.{name} must be a positive int or null, got {v!r}"
                )
        if self.geometry == "resized_crop" and self.image_size is None:
            raise ValueError(
                "transforms.image_size: a resized crop needs an output size"
            )
        if len(self.std) not in (1, len(self.mean)):
            raise ValueError(
                f"transforms.std {self.std} does not match mean {self.mean}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"transforms.std must be positive, got {self.std}")
        if self.max_value not in (1.0, 255.0):
            raise ValueError(
                f"transforms.max_value must be 1.0 or 255.0, got {self.max_value}"
            )

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable parameters (every field; the ``augmentation``
        dataset of a run); ``Transforms.from_description`` is the inverse."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> Transforms:
        """The preset ``describe()`` returned (lists back to tuples).

        Raises:
            ValueError: a field is missing or unknown (one line naming them).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(description) - names)
        missing = sorted(names - set(description))
        if unknown or missing:
            parts = [f"unknown field(s) {unknown}"] if unknown else []
            parts += [f"missing field(s) {missing}"] if missing else []
            raise ValueError(f"transforms description: {'; '.join(parts)}")
        return cls(
            **{
                k: tuple(v) if isinstance(v, list) else v
                for k, v in description.items()
            }
        )

    def train_sample(
        self, img: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Random geometric augmentation of one image.

        The same as ``train_region`` followed by ``train_from_region`` (the
        loader-side and the device-side halves of ``augment_on: device``), so both
        paths draw the same parameters from the same generator.

        Args:
            img: uint8 (C, H, W).
            generator: CPU generator for the random draws (``None``: torch's global).

        Returns:
            uint8 (C, S, S) with S = ``image_size`` (``affine`` without an
            ``image_size``: (C, H, W)).
        """
        region, params = self.train_region(img, generator)
        return self.train_from_region(region, params)

    def train_region(
        self, img: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, tuple[float, ...]]:
        """Loader-side half of ``train_sample``: draw the augmentation parameters
        and cut the region they need, with no interpolation for a resized crop.

        Args:
            img: uint8 (C, H, W).
            generator: as in ``train_sample``.

        Returns:
            ``(region, params)``: the uint8 (C, h, w) crop box of the image
            (``resized_crop``; a view) or the image at its working size
            (``affine``), and its ``TRAIN_PARAMS`` parameters: top, left,
            height, width, flip, angle, tx, ty, scale.
        """
        _check_image(img)
        if self.resize_before_crop and self.resize_size is not None:
            img = resize_shorter(img, self.resize_size)
        if self.geometry == "affine" and self.image_size is not None:
            img = F.resize(img, [self.image_size] * 2, BILINEAR, antialias=True)
        height, width = img.shape[-2:]
        top, left, h, w = 0, 0, height, width
        angle, tx, ty, scale = 0.0, 0, 0, 1.0
        if self.geometry == "resized_crop":
            top, left, h, w = resized_crop_params(
                height, width, self.scale, self.ratio, generator
            )
            img = img[:, top : top + h, left : left + w]
        else:
            angle = _uniform(generator, -self.degrees, self.degrees)
            tx = round(_uniform(generator, -self.translate * w, self.translate * w))
            ty = round(_uniform(generator, -self.translate * h, self.translate * h))
            scale = _uniform(generator, *self.affine_scale)
        flip = self.flip_p > 0 and _uniform(generator) < self.flip_p
        return img, (top, left, h, w, float(flip), angle, tx, ty, scale)

    def train_from_region(
        self, region: torch.Tensor, params: Sequence[float]
    ) -> torch.Tensor:
        """Device-side half of ``train_sample``: resize the crop to S×S (or apply
        the affine map) and flip, on ``region``'s device.

        Args:
            region: uint8 (C, h, w) from ``train_region`` (any device).
            params: its ``TRAIN_PARAMS`` parameters (numbers).

        Returns:
            uint8 (C, S, S) (``affine`` without ``image_size``: (C, h, w)).
        """
        _, _, _, _, flip, angle, tx, ty, scale = params
        if self.geometry == "resized_crop":
            size = [self.image_size, self.image_size]
            img = F.resize(region, size, BILINEAR, antialias=True)
        else:
            fill = None if self.fill == 0 else [float(self.fill)] * region.shape[0]
            img = F.affine(
                region,
                angle,
                [int(tx), int(ty)],
                scale,
                [0.0, 0.0],
                BILINEAR,
                fill=fill,
            )
        if flip:
            img = F.horizontal_flip(img)
        return img

    def train_batch(
        self, buffer: torch.Tensor, shapes: torch.Tensor, params: torch.Tensor
    ) -> torch.Tensor:
        """``train_from_region`` over a packed batch (``pack_regions``).

        Args:
            buffer: uint8 (N,) the regions one after the other, each stored
                height × width × channels (any device).
            shapes: int64 (B, 4) channels, height, width, offset in ``buffer``.
            params: float64 (B, ``TRAIN_PARAMS``).

        Returns:
            uint8 (B, C, S, S) on ``buffer``'s device.
        """
        out = []
        rows = zip(shapes.tolist(), params.tolist(), strict=True)
        for (c, h, w, offset), p in rows:
            region = buffer[offset : offset + c * h * w].view(h, w, c).permute(2, 0, 1)
            out.append(self.train_from_region(region, p))
        return torch.stack(out)

    def test_sample(self, img: torch.Tensor) -> torch.Tensor:
        """Deterministic test preprocessing of one image.

        Args:
            img: uint8 (C, H, W).

        Returns:
            uint8 (C, S, S): shorter side to ``resize_size``, centre crop S
            (``affine`` presets: resized to S×S, or unchanged without ``image_size``).
        """
        _check_image(img)
        if self.geometry == "affine":
            if self.image_size is None:
                return img
            return F.resize(img, [self.image_size] * 2, BILINEAR, antialias=True)
        if self.resize_size is not None:
            img = resize_shorter(img, self.resize_size)
        return F.center_crop(img, [self.image_size, self.image_size])

    def normalize(
        self, batch: torch.Tensor, train: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Batch part of the preset, on ``batch``'s device.

        Args:
            batch: uint8 (B, C, H, W).
            train: apply the train-only part (RandomErasing).
            generator: CPU generator for RandomErasing (``None``: torch's global).

        Returns:
            float32 (B, C, H, W): channels reversed if ``bgr``, scaled to
            ``max_value``, minus ``mean``, divided by ``std``.
        """
        if batch.dtype != torch.uint8 or batch.ndim != 4:
            raise ValueError(
                "normalize expects a uint8 (B, C, H, W) batch, "
                f"got {batch.dtype} {tuple(batch.shape)}"
            )
        x = batch.to(torch.float32)
        if self.max_value == 1.0:
            x = x.div_(255.0)
        if self.bgr:
            x = x.flip(1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = x.sub_(mean).div_(std)
        if train and self.erasing_p > 0:
            x = random_erasing(
                x,
                self.erasing_p,
                self.erasing_scale,
                self.erasing_ratio,
                self.erasing_fill,
                generator,
            )
        return x


def _check_image(img: torch.Tensor) -> None:
    if img.dtype != torch.uint8 or img.ndim != 3:
        raise ValueError(
            f"expected a uint8 (C, H, W) image, got {img.dtype} {tuple(img.shape)}"
        )


def _uniform(
    generator: torch.Generator | None, low: float = 0.0, high: float = 1.0
) -> float:
    return float(torch.empty(()).uniform_(low, high, generator=generator))


def resize_shorter(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (C, H, W) so that its shorter side is ``size`` (torchvision rounding;
    bilinear, antialiased); returned unchanged when it already is."""
    if min(img.shape[-2:]) == size:
        return img
    return F.resize(img, [size], BILINEAR, antialias=True)


def resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """RandomResizedCrop box (torchvision's algorithm: 10 attempts, then a centre
    crop with the ratio clamped).

    Returns:
        (top, left, height, width) of the crop.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, *log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_erasing(
    x: torch.Tensor,
    p: float,
    scale: tuple[float, float],
    ratio: float,
    fill: tuple[float, ...],
    generator: torch.Generator | None = None,
    attempts: int = 100,
) -> torch.Tensor:
    """Zhong et al.'s RandomErasing, batched: each image independently, with
    probability ``p``, gets one rectangle filled with ``fill``.

    Per image: up to ``attempts`` draws of area fraction U(scale) and aspect
    U(ratio, 1/ratio), h = round(sqrt(area·aspect)), w = round(sqrt(area/aspect)); the
    first draw with h < H and w < W is placed uniformly; none fitting → unchanged.

    Args:
        x: float (B, C, H, W), normalised; modified in place.
        fill: C per-channel fill values (or one).

    Returns:
        ``x`` (B, C, H, W).
    """
    b, _, height, width = x.shape
    g = generator
    apply = torch.rand(b, generator=g) < p
    area = torch.empty(b, attempts).uniform_(*scale, generator=g) * (height * width)
    aspect = torch.empty(b, attempts).uniform_(ratio, 1 / ratio, generator=g)
    h = torch.round(torch.sqrt(area * aspect))
    w = torch.round(torch.sqrt(area / aspect))
    ok = (h < height) & (w < width)
    first = ok.to(torch.uint8).argmax(dim=1)
    rows = torch.arange(b)
    h, w = h[rows, first], w[rows, first]
    apply &= ok.any(dim=1)
    top = torch.floor(torch.rand(b, generator=g) * (height - h + 1))
    left = torch.floor(torch.rand(b, generator=g) * (width - w + 1))
    value = torch.tensor(fill, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    for i in apply.nonzero().flatten().tolist():
        y0, x0, hh, ww = int(top[i]), int(left[i]), int(h[i]), int(w[i])
        x[i, :, y0 : y0 + hh, x0 : x0 + ww] = value
    return x


@PRESETS.register("mlrc")
def _mlrc() -> dict[str, Any]:
    # CCP/GSP DMLPreprocessing: their crops, and the batch part BN-Inception's
    # weights declare (255 * (x - ImageNet mean) in BGR order, no std).
    return {
        "image_size": 227,
        "scale": (0.16, 1.0),
        "ratio": (0.75, 1.33),
        **INPUT_CONVENTIONS[bninception.INPUT_CONVENTION],
    }


@PRESETS.register("intra_batch")
def _intra_batch() -> dict[str, Any]:
    # docs/datasets.md#preprocessing-presets; std[0] = 0.299 is the official code's
    # typo, kept.
    return {
        "image_size": 227,
        "std": (0.299, 0.224, 0.225),
        "erasing_p": 0.5,
    }


@PRESETS.register("xbm")
def _xbm() -> dict[str, Any]:
    return {"image_size": 224, "resize_before_crop": True, "scale": (0.2, 1.0)}


@PRESETS.register("proxy_anchor")
def _proxy_anchor() -> dict[str, Any]:
    return {"image_size": 224}


@PRESETS.register("small")
def _small() -> dict[str, Any]:
    # digits/glyphs at native size; no flip (glyph chirality carries the class).
    return {
        "image_size": None,
        "resize_size": None,
        "geometry": "affine",
        "flip_p": 0.0,
        "degrees": 10.0,
        "translate": 0.1,
        "affine_scale": (0.9, 1.1),
        "mean": (0.5,),
        "std": (0.5,),
    }


def build_transforms(
    preset: str,
    *,
    image_size: int | None = None,
    normalize_std: list[float] | None = None,
    **overrides: Any,
) -> Transforms:
    """Build a registered preset (``mlrc``, ``intra_batch``, ``xbm``,
    ``proxy_anchor``, ``small``), optionally overriding its fields.

    Args:
        preset: preset name (``transforms.preset``).
        image_size: output side instead of the preset's (227/224/native).
        normalize_std: std instead of the preset's (e.g. ``[0.229, 0.224, 0.225]``
            to undo the ``intra_batch`` typo).
        **overrides: any other ``Transforms`` field (e.g. ``mean``, ``scale``,
            ``resize_size``, ``erasing_p``).

    Raises:
        KeyError: unknown preset (lists the valid ones).
        ValueError: unknown override (lists the valid ones) or invalid value.
    """
    fields = dict(PRESETS.get(preset, key="transforms.preset")())
    valid = [f.name for f in dataclasses.fields(Transforms) if f.name != "preset"]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(
            f"transforms: unknown option(s) {unknown}; valid: {', '.join(valid)}"
        )
    fields.update(overrides)
    if image_size is not None:
        fields["image_size"] = image_size
    if normalize_std is not None:
        fields["std"] = normalize_std
    for k, v in fields.items():
        if isinstance(v, list):
            fields[k] = tuple(v)
    return Transforms(preset=preset, **fields)
