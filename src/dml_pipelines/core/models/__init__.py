"""Backbones, poolings and the embedder."""
