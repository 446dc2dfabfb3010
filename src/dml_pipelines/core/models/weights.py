"""Where the ImageNet weights of ``pretrained: true`` come from (torch-free, so
the report can name them): torchvision's files for ResNet and GoogLeNet, and
for BN-Inception the published file of the pretrainedmodels project; the input
conventions these weights expect (``INPUT_CONVENTIONS``: each backbone declares
its own as ``FeatureBackbone.input_convention``, and a transforms preset made
for a backbone takes its batch part from it, as ``mlrc`` from BN-Inception's;
docs/datasets.md#preprocessing-presets); and
``hub_file``, which downloads and checks such a file (torch is imported only
when it is called). Loading lives in ``backbones.py`` and ``bninception.py``."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

#: ImageNet channel statistics (RGB, pixels in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: what a family of ImageNet weights expects of its input batch: the batch part
#: of a transforms preset (``core/data/transforms.py::Transforms`` fields)
INPUT_CONVENTIONS: dict[str, dict[str, object]] = {
    # torchvision's weights (ResNet, GoogLeNet): RGB in [0, 1], mean and std
    "torchvision": {
        "max_value": 1.0,
        "bgr": False,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
    },
    # the Caffe-converted BN-Inception: BGR in 0–255 minus the mean, no std
    "caffe": {
        "max_value": 255.0,
        "bgr": True,
        "mean": tuple(255.0 * m for m in reversed(IMAGENET_MEAN)),
        "std": (1.0,),
    },
}

#: BN-Inception's ImageNet weights (pretrainedmodels; the name carries the
#: SHA-256 prefix the download is checked against)
BNINCEPTION_URL = (
    "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth"
)


def bninception_note() -> str:
    """One sentence: how a BN-Inception run gets its ImageNet weights."""
    name = BNINCEPTION_URL.rsplit("/", 1)[1]
    return (
        f"BN-Inception runs load the ImageNet weights `{name}` "
        f"(<{BNINCEPTION_URL}>): downloaded on the first run into torch's hub "
        f"cache, checked against the hash in its name and converted once; "
        f"offline, download it elsewhere and place it in "
        f"`$TORCH_HOME/hub/checkpoints/` (default `~/.cache/torch/hub/checkpoints/`), "
        f"or point `<method>.backbone.args.weights` at a converted state dict."
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_file(url: str, what: str) -> Path:
    """The weights file at ``url`` in torch's hub cache, downloaded on first use.

    The file name must carry a SHA-256 prefix (``<name>-<hex>.<ext>``, torch
    hub's convention); the cached file is checked against it on every call.

    Args:
        url: ``http(s)://`` or ``file://`` URL of the file.
        what: what the file is (in the messages).

    Returns:
        The path of the verified file under ``<hub dir>/checkpoints``.

    Raises:
        ValueError: the name has no hash, the download fails (offline: names the
            URL and where to place the file), or the hash does not match.
    """
    from urllib.error import URLError

    from torch.hub import HASH_REGEX, download_url_to_file, get_dir

    name = Path(urlparse(url).path).name
    match = HASH_REGEX.search(name)
    if not name or not match or not match.group(1):
        raise ValueError(
            f"backbone.args.weights_url: {url}: the file name must carry the "
            f"SHA-256 prefix of the file (<name>-<hex prefix>.pth)"
        )
    prefix = match.group(1)
    dest = Path(get_dir()) / "checkpoints" / name
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f"{name}.{os.getpid()}.download")
        try:
            download_url_to_file(url, str(part), progress=sys.stderr.isatty())
        except (URLError, OSError, ValueError) as exc:
            reason = str(getattr(exc, "reason", exc)).replace("\n", " ")
            raise ValueError(
                f"backbone.pretrained: cannot download {what} from {url} ({reason}); "
                f"download it on a machine with network access and place it at {dest}"
            ) from None
        got = _sha256(part)
        if not got.startswith(prefix):
            part.unlink()
            raise ValueError(
                f"backbone.pretrained: {url}: SHA-256 {got[:16]}... does not start "
                f"with {prefix} (the hash in the file name); not used"
            )
        os.replace(part, dest)
        return dest
    got = _sha256(dest)
    if not got.startswith(prefix):
        raise ValueError(
            f"backbone.pretrained: {dest}: SHA-256 {got[:16]}... does not start with "
            f"{prefix} (the hash in the file name); replace it with the file of {url}"
        )
    return dest
