"""The tuning glyph set (docs/datasets.md#glyphs_tune) ingests through the real
``data`` pipeline like ``glyphs``: embedded (no download, no data root), the
index table and the image cache written under the dataset's own name."""

from __future__ import annotations

import json

import pandas as pd

from dml_pipelines.core.data.cache import ImageCache
from tests.pipelines.conftest import run

SMALL = {"glyphs_tune": {"options": {"images_per_class": 2}}}


def test_data_pipeline_ingests_glyphs_tune(project):
    assert not (project / "data/01_raw/glyphs_tune").exists()
    run(project, "data", {"dataset": "glyphs_tune", "datasets": SMALL})
    table = pd.read_parquet(
        project / "data/02_intermediate/glyphs_tune/index_table.parquet"
    )
    assert table["label"].nunique() == 100 and len(table) == 200
    assert set(table.loc[table["split"] == "test", "label"]) == set(range(50, 100))
    manifest = json.loads(
        (project / "data/01_raw/glyphs_tune/manifest.json").read_text()
    )
    assert manifest["dataset"] == "glyphs_tune"
    cache = ImageCache.open(project / "data/03_primary/glyphs_tune/cache_original")
    assert sorted(cache.row_ids) == sorted(table.index)
