"""Cilium's reserved security identities: the one table every stage reads.

Numbers and names from Cilium's ``pkg/identity`` (numeric identities 1-10; 0 is "unknown", the
identity of a flow endpoint Cilium could not resolve). A reserved identity stands for the label
``reserved:<name>``: a flow endpoint that carries no labels but a reserved identity is that label
for policy purposes, Hubble prints it as ``(<name>)``, and ``hubble observe --identity`` accepts
the name for the number.
"""

from __future__ import annotations

from types import MappingProxyType

#: number -> name, in identity order (Hubble lists them sorted by number in its errors).
RESERVED_IDENTITY_NAMES = MappingProxyType({
    1: "host",
    2: "world",
    3: "unmanaged",
    4: "health",
    5: "init",
    6: "remote-node",
    7: "kube-apiserver",
    8: "ingress",
    9: "world-ipv4",
    10: "world-ipv6",
})
#: name -> number.
RESERVED_IDENTITY_NUMBERS = MappingProxyType({name: number for number, name in RESERVED_IDENTITY_NAMES.items()})
#: number -> the label it stands for (``reserved:world``).
RESERVED_IDENTITY_LABELS = MappingProxyType(
    {number: f"reserved:{name}" for number, name in RESERVED_IDENTITY_NAMES.items()}
)
#: The identity of an endpoint Cilium could not resolve; Hubble prints it by this name.
UNKNOWN_IDENTITY = 0
UNKNOWN_IDENTITY_NAME = "unknown"
