"""The project's Kedro config loader: Kedro's ``OmegaConfigLoader`` whose
``parameters`` apply each method block's layers in the project's order
(``core/layers.py``; docs/protocols.md "What identifies a run"):

    block in conf/base  <  the dataset's recipe  <  conf/local  <  --params

and refuse a ``--params`` key that matches no parameter (one line, with the
closest name). Kedro alone merges ``--params`` into the block and the project
applied the dataset's recipe afterwards, so a recipe silently beat the command
line. ``provenance`` keeps, per method block, the keys that a recipe,
conf/local or the command line set (``hooks.RunParameters`` logs them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader

from dml_pipelines.core.layers import (
    Setting,
    is_method_block,
    layer_block,
    nest_dotted,
    unknown_runtime_keys,
)

_RESOLVER = re.compile(r"\$\{\s*runtime_params:\s*([^,}\s]+)")


class ProjectConfigLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` with the project's parameter layering."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `kedro run --params a.b=1` reaches here as {"a": {"b": 1}}; the API
        # (`KedroSession.create(runtime_params={"a.b": 1})`) passes the dotted
        # key as it is, which Kedro's resolver and the method layers would
        # both miss (the run silently trained the defaults): nest it the same
        self.runtime_params = nest_dotted(self.runtime_params or {})
        #: method block -> the settings above conf/base (filled on load)
        self.provenance: dict[str, list[Setting]] = {}
        #: the dataset the method blocks were resolved for
        self.dataset: str | None = None

    def resolver_keys(self) -> set[str]:
        """Every key a ``${runtime_params:...}`` resolver of the config reads."""
        keys: set[str] = set()
        for env in {self.base_env, self.env or self.default_run_env}:
            root = Path(str(self.conf_source)) / str(env)
            for path in root.rglob("*.y*ml") if root.is_dir() else []:
                keys.update(_RESOLVER.findall(path.read_text(errors="replace")))
        return keys

    def _layers(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """conf/base and conf/local parameters each on their own, without the
        command line."""
        base_cfgs, env_cfgs, *_ = self._read_raw_config("parameters")
        runtime, self.runtime_params = self.runtime_params, {}
        try:
            base = self._merge_and_resolve("parameters", base_cfgs)
            local = self._merge_and_resolve("parameters", env_cfgs) if env_cfgs else {}
        finally:
            self.runtime_params = runtime
        return base, local

    def __getitem__(self, key: str) -> Any:
        params = super().__getitem__(key)
        if key != "parameters" or not isinstance(params, dict):
            return params
        runtime = dict(self.runtime_params or {})
        base, local = self._layers()
        written = {**base, **local}  # the command line adds its keys to params
        unknown = unknown_runtime_keys(runtime, written, self.resolver_keys())
        if unknown:
            raise ValueError("; ".join(unknown))
        self.dataset = str(params.get("dataset", ""))
        self.provenance = {}
        for name, block in base.items():
            if not is_method_block(name, block):
                continue
            params[name], self.provenance[name] = layer_block(
                name, block, local.get(name), runtime.get(name), self.dataset
            )
        return params
