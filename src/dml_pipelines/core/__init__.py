"""Pure PyTorch/numpy core of dml_pipelines. Never imports Kedro or DVC."""
