"""Per-method parameter typing for the shared template's node functions."""

import functools


def typed(func, config_cls):
    """``func`` with its ``params`` argument annotated as ``config_cls`` (the
    method's own config model), so Kedro validates that block before any node
    runs and its unknown keys fail."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    wrapper.__annotations__ = {**func.__annotations__, "params": config_cls}
    return wrapper
