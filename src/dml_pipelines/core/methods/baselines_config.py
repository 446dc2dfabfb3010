"""The baselines (a plain metric loss on the embedder): one pipeline per loss,
named after its loss registry key. This tuple is the one list of baselines; the
loss modules are discovered from ``core/losses/`` (a test checks every name here
is a registered loss)."""

from __future__ import annotations

from dml_pipelines.core.config import BaselineConfig
from dml_pipelines.core.methods.configs import register_config

BASELINES = (
    "contrastive_c1",
    "contrastive_c2",
    "triplet",
    "multi_similarity",
    "proxy_anchor",
    "proxy_nca_pp",
    "soft_triple",
)

for _name in BASELINES:
    register_config(_name)(BaselineConfig)
