"""Wiring of the ``data`` pipeline (cheap to import: no torch)."""

from kedro.pipeline import Node, Pipeline

from dml_pipelines.pipelines.data.nodes import ingest_dataset, prepare_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                ingest_dataset,
                ["params:data", "params:datasets"],
                "listed_index_table",
                name="ingest_dataset",
            ),
            Node(
                prepare_images,
                ["listed_index_table", "params:data", "params:datasets"],
                ["index_table", "image_cache", "skipped_images"],
                name="prepare_images",
            ),
        ],
        tags="data",
    )
