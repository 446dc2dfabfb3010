"""The pydantic base of every configuration model: unknown keys are errors, and a
validation error is one line naming the key
(``contrastive_c1.sampler.P: Input should be greater than 0 (got 0)``).

Torch-free, so that Kedro validates node parameters before any node runs without
importing torch.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError


def one_line(prefix: str, exc: ValidationError) -> str:
    """``exc`` as one line: ``<prefix>.<field>: <problem> (got <value>)``, the
    errors joined by ``; ``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = err.get("input")
        if err["type"] not in ("extra_forbidden", "missing") and not isinstance(
            got, dict
        ):
            msg += f" (got {got!r})"
        parts.append(f"{key}: {msg}")
    return "; ".join(parts)


class OneLineErrors:
    """Mixin for pydantic models: ``model_validate`` (what Kedro calls) raises a
    one-line ``ValueError`` naming ``<error_key(obj)>.<field>`` and the problem."""

    error_key: ClassVar[str] = ""

    @classmethod
    def _error_key(cls, obj: Any) -> str:
        return cls.error_key

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any):  # noqa: D102
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise ValueError(one_line(cls._error_key(obj), exc)) from None


class StrictModel(OneLineErrors, BaseModel):
    """Base: unknown keys forbidden; one-line validation errors."""

    model_config = ConfigDict(
        extra="forbid", validate_default=True, allow_inf_nan=False
    )
