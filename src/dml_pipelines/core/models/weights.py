"""Where the ImageNet weights of ``pretrained: true`` come from (torch-free, so
the report can name them): torchvision's files for ResNet and GoogLeNet, and
for BN-Inception the published file of the pretrainedmodels project. Loading
lives in ``backbones.py`` (``hub_file``) and ``bninception.py``."""

from __future__ import annotations

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
