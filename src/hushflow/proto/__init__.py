"""Hubble's protobuf schema (flow, relay and observer messages) as seen by hushflow.

The ``*_pb2`` modules are generated from the ``.proto`` files next to this one by
``make proto``; never edit them by hand.  This module adds small lookup tables derived from
the descriptors, computed once at import and immutable.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from google.protobuf.descriptor import Descriptor

from hushflow.proto import flow_pb2, observer_pb2, relay_pb2

__all__ = [
    "EXPORT_EVENT_DESCRIPTOR",
    "FLOW_DESCRIPTOR",
    "FLOW_FILTER_DESCRIPTOR",
    "GET_FLOWS_RESPONSE_DESCRIPTOR",
    "field_order",
    "flow_pb2",
    "observer_pb2",
    "relay_pb2",
]

FLOW_DESCRIPTOR: Descriptor = flow_pb2.Flow.DESCRIPTOR
FLOW_FILTER_DESCRIPTOR: Descriptor = flow_pb2.FlowFilter.DESCRIPTOR
GET_FLOWS_RESPONSE_DESCRIPTOR: Descriptor = observer_pb2.GetFlowsResponse.DESCRIPTOR
EXPORT_EVENT_DESCRIPTOR: Descriptor = observer_pb2.ExportEvent.DESCRIPTOR


def field_order(descriptor: Descriptor) -> Mapping[str, int]:
    """Proto field name -> position in declaration order.

    Go's protojson (used by Hubble for every JSON form) writes fields in declaration
    order, so sorting keys by this table reproduces Hubble's key order.
    """
    return MappingProxyType({f.name: i for i, f in enumerate(descriptor.fields)})
