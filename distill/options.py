"""``key=value`` option values of the distill commands, parsed one way.

``--method NAME:key=value,...``, ``--normalise-param key=value`` and ``--augment-param
key=value[,value...]`` all read their values with :func:`parse_value`.
"""

from __future__ import annotations


def parse_value(raw: str) -> bool | int | float | str:
    """``true``/``false`` (any case) -> bool, then int, then float, else the text itself.

    >>> [parse_value(v) for v in ("True", "3", "0.5", "1e-3", "cosine")]
    [True, 3, 0.5, 0.001, 'cosine']
    """
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(raw)
        except ValueError:
            pass
    return raw
