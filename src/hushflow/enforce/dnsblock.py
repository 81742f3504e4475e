"""DNS-level blocking artifacts for FQDN denies: a CoreDNS `template` snippet and an RPZ zone.

The DNS block is the first line of defence: a pod that cannot resolve a denied name never
learns an IP to connect to. It is not a guarantee: hard-coded IPs, DNS-over-HTTPS and any
resolver other than the one configured here bypass it; the L3 deny still applies to them.

Both generators are pure functions of the entries; the caller writes the files.

- CoreDNS: the `match` regexes reproduce the policy matcher exactly (reference §B.1): `*` is
  zero or more of `[-a-zA-Z0-9_]` inside one label, a leading `**.` is one or more labels from
  Cilium 1.19 and one label before. They are written for Go's RE2 without backslashes (`[.]`
  for a dot), so the Corefile tokenizer cannot alter them.
- RPZ: a wildcard owner `*.example.com` triggers for every depth below `example.com`, where
  the policy's `*.` is exactly one label. Such entries are emitted broader than the policy and
  say so; entries RPZ cannot express at all (a star inside a label, a star label after the
  first, a pattern of only stars) are left out of the zone, listed in a comment and returned
  in `RpzResult.unsupported`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from hushflow.policy.fqdn import FQDNSelector, fully_qualified, multi_label_prefix

BlockAnswer = Literal["nxdomain", "refused", "nodata", "null-ip"]
BLOCK_ANSWERS: tuple[BlockAnswer, ...] = ("nxdomain", "refused", "nodata", "null-ip")

_LABEL_CLASS = "[-a-zA-Z0-9_]"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
# The label right under the RPZ origin that turns an owner into another trigger type.
_RPZ_TRIGGER_LABELS = frozenset({"rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip"})
# Synthetic names for the SOA of negative answers; `.invalid` can never be a real zone (RFC 2606).
_SOA_MNAME = "ns.hushflow.invalid."
_SOA_RNAME = "hostmaster.hushflow.invalid."


@dataclass(frozen=True, slots=True)
class BlockedName:
    """One denied FQDN selector and why it is denied, for the comments of the generated files.

    `reason` is human text, e.g. `CiliumNetworkPolicy my-namespace/app-external-block-policy
    spec.egressDeny[0] (log: app-explicit-traffic-blocked) policies/a.yaml:15`.
    """

    selector: FQDNSelector
    reason: str


@dataclass(frozen=True, slots=True)
class RpzResult:
    """An RPZ zone and what it could not say exactly.

    `unsupported`: entries RPZ cannot express; they are not in the zone (only in a comment).
    `broader`: entries in the zone as a wildcard that also blocks names the policy does not
    select (RPZ `*.` is any depth, the policy's `*.` one label).
    """

    text: str
    unsupported: tuple[BlockedName, ...]
    broader: tuple[BlockedName, ...]


# -- shared ----------------------------------------------------------------------------------


def _selector_text(selector: FQDNSelector) -> str:
    """The selector as written by policy semantics: lowercased, fully qualified."""
    return fully_qualified(selector.match_pattern if selector.match_pattern is not None else selector.match_name or "")


def _selects_everything(selector: FQDNSelector) -> bool:
    """Cilium's select-all for the selector's version (policy.fqdn.selects_every_name)."""
    return selector.is_wildcard_all


def _check_chars(selector: FQDNSelector, text: str, allowed: frozenset[str]) -> None:
    bad = sorted({char for char in text if char not in allowed and char != "."})
    if bad:
        # The CRD schema rejects these before the model is built; reaching here is a bug upstream.
        raise ValueError(f"{selector.where}: {selector} has characters no DNS block can match: {''.join(bad)!r}")


def _comment_text(text: str) -> str:
    """One line of comment: no line breaks or control characters can end the comment early."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _name_sort_key(text: str) -> tuple[str, ...]:
    """Sort names by their labels from the root, so a domain and its subdomains sit together."""
    return tuple(reversed(text.rstrip(".").split(".")))


def _entry_sort_key(entry: BlockedName) -> tuple[tuple[str, ...], str, str]:
    return _name_sort_key(_selector_text(entry.selector)), str(entry.selector), entry.reason


def _check_answer(answer: str) -> None:
    if answer not in BLOCK_ANSWERS:
        raise ValueError(f"unknown DNS block answer {answer!r}; expected one of {', '.join(BLOCK_ANSWERS)}")


def _check_ttl(ttl: int) -> None:
    if not 0 <= ttl <= 2**31 - 1:
        raise ValueError(f"TTL out of range: {ttl}")


# -- CoreDNS ---------------------------------------------------------------------------------


def coredns_regex(selector: FQDNSelector) -> str:
    """The Go (RE2) regex, anchored, matching exactly the query names `selector` selects.

    CoreDNS matches `match` regexes against the lowercased, fully qualified query name; the
    regex is case-insensitive anyway. No backslashes: a literal dot is `[.]`.
    """
    text = _selector_text(selector)
    if selector.match_pattern is None:
        _check_chars(selector, text, _NAME_CHARS)
        return "(?i)^" + _literal(text) + "$"
    _check_chars(selector, text, _NAME_CHARS | {"*"})
    if _selects_everything(selector):
        # Cilium (toFQDNs): every name of DNS characters without empty labels, and the root.
        return f"(?i)^(?:(?:{_LABEL_CLASS}+[.])+|[.])$"
    prefix = ""
    if skip := multi_label_prefix(text, selector.cilium_version):
        # Cilium >= 1.19: two or more leading stars and a dot are one or more whole labels.
        prefix = f"(?:{_LABEL_CLASS}+[.])+"
        text = text[skip:]
    body = "".join(f"{_LABEL_CLASS}*" if char == "*" else _literal(char) for char in text)
    return "(?i)^" + prefix + body + "$"


def _literal(text: str) -> str:
    return text.replace(".", "[.]")


def coredns_snippet(
    entries: Iterable[BlockedName],
    *,
    answer: BlockAnswer = "nxdomain",
    zone_names: Sequence[str] = (".",),
    ttl: int = 60,
) -> str:
    """A Corefile snippet (`template` plugin) that answers denied names with `answer`.

    Paste it inside the server block that serves the pods (e.g. `.:53 { ... }`). Names that no
    regex matches fall through to the next plugin and resolve normally. `zone_names` are the
    template zones: only queries inside them are looked at (the default `.` is every name).

    `answer`: `nxdomain` (rcode NXDOMAIN), `refused` (rcode REFUSED), `nodata` (NOERROR, no
    answer) or `null-ip` (A `0.0.0.0`, AAAA `::`, NODATA for other types). Negative answers
    carry a synthetic SOA so resolvers cache them for `ttl` seconds (RFC 2308).

    A pattern of only stars is written commented out: at the cluster resolver it would stop
    every pod resolving anything, not only the pods the policy selects.
    """
    _check_answer(answer)
    _check_ttl(ttl)
    zones = sorted({fully_qualified(zone) for zone in zone_names})
    if not zones:
        raise ValueError("zone_names is empty: the snippet would match no query")
    ordered = sorted(entries, key=_entry_sort_key)

    # One `match` line per distinct regex, with every entry that produced it as a comment.
    groups: dict[str, list[BlockedName]] = {}
    for entry in ordered:
        groups.setdefault(coredns_regex(entry.selector), []).append(entry)
    active = {regex: group for regex, group in groups.items() if not _selects_everything(group[0].selector)}
    everything = [entry for regex, group in groups.items() if regex not in active for entry in group]

    lines = [
        "# hushflow DNS block for CoreDNS (template plugin): the first line of defence for FQDN denies.",
        "# Paste inside the server block that serves the pods, e.g. `.:53 { ... }` of the coredns ConfigMap.",
        f"# Denied names get: {_coredns_answer_text(answer)}. Other names fall through and resolve normally.",
        "# Each `match` reproduces the policy's FQDN matching exactly (Cilium: `*` stays inside one label).",
        "# It blocks these names for every client of this resolver, not only the pods the policy selects;",
        "# hard-coded IPs and DNS-over-HTTPS bypass it (the L3 deny still applies).",
    ]
    uncovered = [entry for group in active.values() for entry in group if not _inside_zones(entry.selector, zones)]
    if zones != ["."] and uncovered:
        lines.append(
            f"# WARNING: only names inside {' '.join(zones)} are looked at; some entries lie (partly) outside:"
        )
        lines.extend(f"#   {_comment_text(f'{entry.selector} ({entry.reason})')}" for entry in uncovered)
    for entry in everything:
        lines.append(f"# NOT APPLIED: {_comment_text(f'{entry.reason} - {entry.selector}')}")
        lines.append("#   it selects every name: here it would stop all DNS for every client of this resolver.")
        lines.append("#   To apply it anyway, add this line to the template(s) below:")
        lines.append(f"#   match {coredns_regex(entry.selector)}")
    if not active:
        lines.append("# No denied names: nothing to block.")
        return "\n".join(lines) + "\n"

    match_lines: list[str] = []
    for regex, group in active.items():
        for entry in group:
            match_lines.append(f"    # {_comment_text(f'{entry.reason} - {entry.selector}')}")
        match_lines.append(f"    match {regex}")

    zone_args = " ".join(zones)
    soa = f'authority "{{{{ .Zone }}}} {ttl} IN SOA {_SOA_MNAME} {_SOA_RNAME} (1 {ttl} {ttl} {ttl} {ttl})"'
    blocks: list[tuple[str, list[str]]]
    if answer == "nxdomain":
        blocks = [("ANY", ["rcode NXDOMAIN", soa])]
    elif answer == "refused":
        blocks = [("ANY", ["rcode REFUSED"])]
    elif answer == "nodata":
        blocks = [("ANY", ["rcode NOERROR", soa])]
    else:
        blocks = [
            ("A", [f'answer "{{{{ .Name }}}} {ttl} IN A 0.0.0.0"']),
            ("AAAA", [f'answer "{{{{ .Name }}}} {ttl} IN AAAA ::"']),
            ("ANY", ["rcode NOERROR", soa]),  # every other type: NODATA
        ]
    for qtype, directives in blocks:
        lines.append(f"template IN {qtype} {zone_args} {{")
        lines.extend(match_lines)
        lines.extend(f"    {directive}" for directive in directives)
        lines.append("    fallthrough")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _coredns_answer_text(answer: BlockAnswer) -> str:
    return {
        "nxdomain": "NXDOMAIN",
        "refused": "REFUSED",
        "nodata": "NODATA (NOERROR, empty answer)",
        "null-ip": "A 0.0.0.0 / AAAA :: (NODATA for other types)",
    }[answer]


def _inside_zones(selector: FQDNSelector, zones: Sequence[str]) -> bool:
    """Is every name the selector can select inside one of `zones`?"""
    suffix = _fixed_suffix(_selector_text(selector))
    return any(zone == "." or suffix == zone or suffix.endswith("." + zone) for zone in zones)


def _fixed_suffix(text: str) -> str:
    """The labels after the last label holding a star: `api-*.example.com.` -> `example.com.`."""
    labels = text.rstrip(".").split(".")
    last_star = max((i for i, label in enumerate(labels) if "*" in label), default=-1)
    rest = labels[last_star + 1 :]
    return ".".join(rest) + "." if rest else "."


# -- RPZ -------------------------------------------------------------------------------------

# The records of each answer, given the owner. REFUSED has no RPZ action: see rpz_zone.
_RPZ_RECORDS: dict[BlockAnswer, tuple[str, ...]] = {
    "nxdomain": ("CNAME .",),
    "nodata": ("CNAME *.",),
    "refused": ("CNAME rpz-drop.",),
    "null-ip": ("A 0.0.0.0", "AAAA ::"),
}
_RPZ_ANSWER_TEXT: dict[BlockAnswer, str] = {
    "nxdomain": "NXDOMAIN (`CNAME .`)",
    "nodata": "NODATA (`CNAME *.`)",
    "refused": "DROP (`CNAME rpz-drop.`): RPZ has no REFUSED action; the nearest one makes the resolver "
    "send no answer at all, so clients time out instead of failing fast",
    "null-ip": "local data A 0.0.0.0 and AAAA :: (NODATA for other types)",
}


@dataclass(frozen=True, slots=True)
class _RpzOwner:
    """How one selector is written in RPZ: an owner name, whether it is broader, or why not."""

    owner: str | None
    broader: bool
    why_not: str | None


def _rpz_owner(selector: FQDNSelector, origin: str) -> _RpzOwner:
    text = _selector_text(selector)
    _check_chars(selector, text, _NAME_CHARS | ({"*"} if selector.match_pattern is not None else set()))
    labels = text.rstrip(".").split(".")
    broader = False
    if selector.match_pattern is not None and "*" in text:
        if _selects_everything(selector):
            return _RpzOwner(
                None, False, "it selects every name; a resolver-wide block would stop all DNS for every client"
            )
        leading = 0
        while leading < len(labels) and labels[leading] and set(labels[leading]) == {"*"}:
            leading += 1
        rest = labels[leading:]
        if not rest:  # `*.*` (two labels, Cilium's matchpattern): no fixed suffix to hang a wildcard on
            return _RpzOwner(
                None, False, "it has no fixed label; an RPZ wildcard would block every name for every client"
            )
        if any("*" in label for label in rest):
            starred = next(label for label in rest if "*" in label)
            if leading == 0 and set(starred) != {"*"}:
                why = f"the star in label {starred!r} matches part of a label; RPZ wildcards are whole labels"
            else:
                why = f"a star in label {starred!r} after the first label; RPZ wildcards are only the leftmost label"
            return _RpzOwner(None, False, why)
        # Cilium >= 1.19: a leading `**.` (or more stars) is one or more labels, exactly RPZ's `*.`.
        exact_depth = leading == 1 and multi_label_prefix(text, selector.cilium_version) > 0
        broader = not exact_depth
        labels = ["*", *rest]
    if labels[-1] in _RPZ_TRIGGER_LABELS:
        return _RpzOwner(None, False, f"its last label {labels[-1]!r} is an RPZ trigger keyword, not a QNAME trigger")
    owner = ".".join(labels)
    wire_length = sum(len(label) + 1 for label in owner.split(".") + origin.rstrip(".").split(".")) + 1
    if any(len(label) > 63 for label in labels) or wire_length > 255:
        return _RpzOwner(None, False, f"the name is longer than DNS allows once under the RPZ origin {origin}")
    return _RpzOwner(owner, broader, None)


def rpz_zone(
    entries: Iterable[BlockedName],
    *,
    answer: BlockAnswer = "nxdomain",
    origin: str = "rpz.hushflow.local.",
    serial: int,
    ttl: int = 300,
) -> RpzResult:
    """An RPZ (Response Policy Zone) file answering denied names with `answer`.

    QNAME triggers only. `nxdomain` is `CNAME .`, `nodata` is `CNAME *.`, `null-ip` is local
    data `A 0.0.0.0` + `AAAA ::`. RPZ has no action for REFUSED: `refused` is written as the
    nearest one, `CNAME rpz-drop.` (no answer at all), and the zone says so.

    An exact name blocks that name only (not its subdomains), as the policy does. A pattern
    whose leading labels are stars becomes a wildcard owner, which RPZ applies at any depth:
    broader than the policy unless it is `**.` on Cilium >= 1.19 (returned in `broader`).
    Other patterns cannot be expressed: they are returned in `unsupported` and listed in a
    comment, never widened or silently dropped. Output is sorted; `serial` is the caller's.
    """
    _check_answer(answer)
    _check_ttl(ttl)
    if not 0 <= serial <= 2**32 - 1:
        raise ValueError(f"SOA serial out of range (0..4294967295): {serial}")
    origin = fully_qualified(origin)
    ordered = sorted(entries, key=_entry_sort_key)

    by_owner: dict[str, list[tuple[BlockedName, bool]]] = {}
    unsupported: list[tuple[BlockedName, str]] = []
    for entry in ordered:
        found = _rpz_owner(entry.selector, origin)
        if found.owner is None:
            unsupported.append((entry, found.why_not or ""))
        else:
            by_owner.setdefault(found.owner, []).append((entry, found.broader))

    lines = [
        "; hushflow DNS block: Response Policy Zone (QNAME triggers), the first line of defence for FQDN denies.",
        f"; Load it as the RPZ {origin} (BIND response-policy, Unbound rpz:, PowerDNS rpzFile, Knot policy.rpz).",
        f"; Denied names get: {_RPZ_ANSWER_TEXT[answer]}.",
        "; RPZ `*.name` blocks every depth below name, while the policy's `*` is one label: entries marked",
        "; BROADER block more names than the policy denies. Hard-coded IPs and DNS-over-HTTPS bypass any",
        "; DNS block (the L3 deny still applies).",
        f"$ORIGIN {origin}",
        f"$TTL {ttl}",
        f"@ IN SOA localhost. hostmaster.localhost. ({serial} 3600 600 86400 {ttl})",
        "@ IN NS localhost.",
    ]
    for owner in sorted(by_owner, key=_name_sort_key):
        lines.append("")
        for entry, broader in by_owner[owner]:
            note = f"{entry.reason} - {entry.selector}"
            if broader:
                note += f" - BROADER: RPZ applies {owner} at any depth, the policy at {_depth_text(entry.selector)}"
            lines.append(f"; {_comment_text(note)}")
        lines.extend(f"{owner} {record}" for record in _RPZ_RECORDS[answer])
    if unsupported:
        lines.append("")
        lines.append("; NOT IN THIS ZONE: RPZ cannot express these policy patterns; the DNS block does not cover")
        lines.append("; them (the L3 deny still applies):")
        for entry, why in unsupported:
            lines.append(f"; {_comment_text(f'{entry.selector} - {why} - {entry.reason}')}")
    widened = [entry for group in by_owner.values() for entry, wide in group if wide]
    return RpzResult(
        text="\n".join(lines) + "\n",
        unsupported=tuple(entry for entry, _why in unsupported),
        broader=tuple(sorted(widened, key=_entry_sort_key)),
    )


def rpz_unsupported_reason(selector: FQDNSelector, origin: str = "rpz.hushflow.local.") -> str | None:
    """Why RPZ cannot express `selector`, or None when it can (exactly or broader)."""
    return _rpz_owner(selector, fully_qualified(origin)).why_not


def _depth_text(selector: FQDNSelector) -> str:
    labels = _selector_text(selector).rstrip(".").split(".")
    stars = 0
    while stars < len(labels) and labels[stars] and set(labels[stars]) == {"*"}:
        stars += 1
    if stars == 1 and labels[0] == "**" and selector.cilium_version < (1, 19):
        return "exactly one label (`**.` is `*.` before Cilium 1.19)"
    if labels[0] == "**" and selector.cilium_version >= (1, 19):
        return f"{stars} or more labels"
    return "exactly one label" if stars == 1 else f"exactly {stars} labels"
