"""Options of the GSP pooling (``core/models/gsp_pooling.py``, registered as
``gsp``; docs/methods/gsp.md), torch-free: the layer checks its arguments with
``check_pooling_args`` and so do the method configs that accept it (``gsp``,
``intra_batch``) before anything is built."""

from __future__ import annotations

from typing import Any

BACKWARDS = ("implicit", "unrolled")
#: ``classifier_kcenter`` needs a method with a classifier (``intra_batch``)
INITS = ("memory_kcenter", "classifier_kcenter", "none")
OPERATORS = ("weighted_avg", "weighted_max", "weighted_gem")


def check_pooling_args(args: dict[str, Any], embedding_dim: int | None = None) -> None:
    """One-line ``ValueError`` naming ``pooling.args.<key>`` for a bad GSP value
    (names are checked against the layer's signature by the registry); with
    ``embedding_dim`` (a method config's), ``dim`` must equal it or be left out."""

    def bad(key: str, why: str) -> None:
        raise ValueError(f"pooling.args.{key}: {why} (got {args[key]!r})")

    ints = ("num_prototypes", "solver_iterations", "init_memory_size", "dim")
    for key in ints:
        if key in args and args[key] is not None:
            if not isinstance(args[key], int) or args[key] <= 0:
                bad(key, "must be a positive integer")
    if "init_delay_steps" in args and (
        not isinstance(args["init_delay_steps"], int) or args["init_delay_steps"] < 0
    ):
        bad("init_delay_steps", "must be an integer >= 0")
    if "transport_ratio" in args and not 0 < float(args["transport_ratio"]) <= 1:
        bad("transport_ratio", "must be in (0, 1]")
    if "entropy_weight" in args and float(args["entropy_weight"]) < 0:
        bad("entropy_weight", "must be >= 0")
    for key, valid in (("backward", BACKWARDS), ("init", INITS)):
        if key in args and args[key] not in valid:
            bad(key, f"valid: {', '.join(valid)}")
    if "operator" in args and args["operator"] not in OPERATORS:
        bad("operator", f"valid: {', '.join(OPERATORS)}")
    k = args.get("num_prototypes", 64)
    if args.get("init", "memory_kcenter") == "memory_kcenter":
        if args.get("init_memory_size", 1024) <= k:
            bad("init_memory_size", f"must exceed num_prototypes {k}")
    dim = args.get("dim")
    if embedding_dim is not None and dim is not None and dim != embedding_dim:
        raise ValueError(
            f"pooling.args.dim: {dim} must equal embedding_dim "
            f"{embedding_dim} (or be left out)"
        )
