"""Hubble FlowFilter semantics, CEL, and `hubble observe` flag translation."""

from hushflow.filter.field_filter import FilterError
from hushflow.filter.flow_filter import (
    CompiledFilters,
    CompiledFlowFilter,
    EventPredicate,
    compile_filters,
    compile_flow_filter,
    parse_flow_filter,
)

__all__ = [
    "CompiledFilters",
    "CompiledFlowFilter",
    "EventPredicate",
    "FilterError",
    "compile_filters",
    "compile_flow_filter",
    "parse_flow_filter",
]
