"""Typed parameters of the report (``conf/base/parameters_report.yml``) and the
grid lists it reads from ``conf/grid.yaml``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RetrievalSheetParams(BaseModel):
    """The retrieval sheet: ``queries`` rows of ``neighbours`` nearest images."""

    model_config = ConfigDict(extra="forbid")

    queries: int = Field(6, ge=1, le=50)
    neighbours: int = Field(5, ge=1, le=20)
    seed: int = 0


class PipelineAlias(BaseModel):
    """A reported method run as a variant of another pipeline."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str
    setting: str | None = None


class ReportParams(BaseModel):
    """The ``report`` block.

    Attributes:
        projection: ``tsne`` or ``pca`` for the 2-D embedding plot.
        projection_classes: test classes the projection shows (a fixed random
            draw; tens of classes in one picture show no structure).
        max_points: points per projection panel (a fixed random subset beyond).
        figure_seed: the seed whose run the projection and the retrieval sheet
            show (the lowest seed present when that seed has no run).
        retrieval: the retrieval sheet's size.
        aliases: reported ``pipeline`` names the project runs as a variant of
            another pipeline (``xbm`` -> ``xbn`` with ``xbn.enabled=false``).
        row_settings: ``{paper: {method: "key=value[; ...]"}}``: settings a
            reported row implies that the spec's rows do not carry.
    """

    model_config = ConfigDict(extra="forbid")

    projection: Literal["pca", "tsne"] = "tsne"
    projection_classes: int = Field(10, ge=1, le=20)
    max_points: int = Field(3000, ge=10)
    figure_seed: int = 0
    retrieval: RetrievalSheetParams = RetrievalSheetParams()
    aliases: dict[str, PipelineAlias] = {}
    row_settings: dict[str, dict[str, str]] = {}


def grid_lists(grid: Mapping[str, Any], source: str) -> dict[str, list]:
    """``datasets``, ``methods`` and ``seeds`` of the grid file.

    Raises:
        ValueError: a list is missing or not a list (one line naming ``source``).
    """
    out = {}
    for key, default in (("datasets", None), ("methods", None), ("seeds", [0])):
        value = grid.get(key, default)
        if not isinstance(value, list):
            raise ValueError(f"{source}: {key}: expected a list, got {value!r}")
        out[key] = value
    return out
