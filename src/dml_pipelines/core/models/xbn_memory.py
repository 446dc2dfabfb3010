"""XBN's cross-batch memory is the one ring buffer of ``core/models/memory.py``
(docs/methods/xbn.md); this module keeps the import path of the code written
before the merge (issue #28) working."""

from dml_pipelines.core.models.memory import RingMemory

__all__ = ["RingMemory"]
