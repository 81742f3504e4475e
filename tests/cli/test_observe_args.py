"""The command line of `hushflow observe`: `hubble observe` arguments → ObserveOptions."""

from __future__ import annotations

from hushflow.cli.observe_args import parse_observe_args


def test_parse_observe_args_defaults_to_compact_output() -> None:
    options = parse_observe_args(["--input-file", "x"])
    assert (options.output, options.input_files, options.first, options.last) == ("compact", ("x",), 0, 0)
