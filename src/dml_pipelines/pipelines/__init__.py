"""Kedro wiring (thin adapters over dml_pipelines.core)."""
