"""Hubble's field masks on Observer responses: which fields of a flow a client asked for.

Hubble copies only the requested paths of each flow into the response (``fieldmask.Copy``),
allocating the intermediate messages even when they end up empty, and builds the response's
``time`` and ``node_name`` from the masked flow. An Observer server (hushflow's own, its test
double, the benchmarks' replay server) answers a ``field_mask`` request with these.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from hushflow.proto import flow_pb2, observer_pb2

FieldMaskTree = dict[str, "FieldMaskTree"]


def field_mask_tree(descriptor: Descriptor, paths: Sequence[str]) -> FieldMaskTree:
    """Paths (``"source.namespace"``) → a tree of field names; ValueError for a path that names no
    field of ``descriptor`` or goes through a repeated or non-message field (as protobuf's
    ``FieldMask.IsValid``). A path that is a prefix of another wins (``Normalize``)."""
    tree: FieldMaskTree = {}
    for path in sorted(paths, key=lambda p: p.count(".")):
        desc: Descriptor | None = descriptor
        node = tree
        parts = path.split(".")
        for i, part in enumerate(parts):
            if desc is None:
                raise ValueError(f"field mask path {path!r}: {parts[i - 1]!r} has no fields")
            fd = desc.fields_by_name.get(part)
            if fd is None:
                raise ValueError(f"field mask path {path!r}: {desc.full_name} has no field {part!r}")
            last = i == len(parts) - 1
            if not last and (fd.is_repeated or fd.type != FieldDescriptor.TYPE_MESSAGE):
                raise ValueError(f"field mask path {path!r}: {part!r} is not a singular message")
            desc = fd.message_type
            if part in node and not node[part]:
                break  # a shorter path already takes the whole field
            if last:
                node[part] = {}
            else:
                node = node.setdefault(part, {})
    return tree


def apply_field_mask(dst: Message, src: Message, tree: FieldMaskTree) -> None:
    """Copy the fields of ``tree`` from ``src`` into ``dst`` as Hubble's ``fieldmask.Copy`` does."""
    for name, sub in tree.items():
        fd = src.DESCRIPTOR.fields_by_name[name]
        if sub:
            # Hubble allocates the intermediate messages up front: they are present, maybe empty.
            inner = getattr(dst, name)
            inner.SetInParent()
            apply_field_mask(inner, getattr(src, name), sub)
        elif fd.is_repeated:
            getattr(dst, name).extend(getattr(src, name))
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            if src.HasField(name):
                getattr(dst, name).CopyFrom(getattr(src, name))
        else:
            value = getattr(src, name)
            if not fd.has_presence or src.HasField(name):
                setattr(dst, name, value)


def masked_response(response: observer_pb2.GetFlowsResponse, tree: FieldMaskTree) -> observer_pb2.GetFlowsResponse:
    """``response`` with its flow cut by ``tree`` as Hubble cuts it (a new message)."""
    flow = flow_pb2.Flow()
    apply_field_mask(flow, response.flow, tree)
    # Hubble builds the response from the masked flow: its time and node name, if kept.
    out = observer_pb2.GetFlowsResponse(flow=flow, node_name=flow.node_name)
    if flow.HasField("time"):
        out.time.CopyFrom(flow.time)
    return out
