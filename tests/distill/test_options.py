"""distill/options.py: one parser for every ``key=value`` option value of distill."""

from __future__ import annotations

import pytest

from distill.options import parse_value


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("FALSE", False), ("3", 3), ("-2", -2), ("0.5", 0.5), ("1e-3", 1e-3),
     ("cosine", "cosine"), ("", "")],
)  # fmt: skip
def test_parse_value_bool_int_float_then_text(raw, value):
    """Booleans (any case), then int, then float; anything else stays text."""
    got = parse_value(raw)
    assert got == value and type(got) is type(value)


def test_every_distill_option_parser_uses_it():
    """--method options, --normalise-param and --augment-param read values the same way."""
    from distill.distillation import MethodSpec
    from distill.normalise import spec_from_cli

    assert MethodSpec.parse("kd:temperature=2.5").options == {"temperature": 2.5}
    spec = spec_from_cli("running-robust-scale", ["window_epochs=60"])
    assert spec["window_epochs"] == 60 and type(spec["window_epochs"]) is int
