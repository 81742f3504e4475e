"""DNS-level blocking artifacts for FQDN denies: a CoreDNS `template` snippet, an RPZ zone and a
Blocky configuration.

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
- Blocky: exact names are plain list entries (Blocky blocks only that name), patterns are
  regex entries (the CoreDNS regex without the final dot), so it is exact like CoreDNS. Blocky
  has no NODATA or REFUSED answer: those are written as nxDomain and say so.
"""

from __future__ import annotations

import ipaddress
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
    if _selects_everything(selector):
        _check_chars(selector, _selector_text(selector), _NAME_CHARS | {"*"})
        # Cilium (toFQDNs): every name of DNS characters without empty labels, and the root.
        return f"(?i)^(?:(?:{_LABEL_CLASS}+[.])+|[.])$"
    return "(?i)^" + _pattern_regex_body(selector) + "$"


def _pattern_regex_body(selector: FQDNSelector, *, final_dot: bool = True) -> str:
    """The unanchored regex of the names `selector` selects (not for select-all patterns), with
    the final dot of a fully qualified name or (`final_dot=False`) without it."""
    text = _selector_text(selector)
    _check_chars(selector, text, _NAME_CHARS | ({"*"} if selector.match_pattern is not None else set()))
    if not final_dot:
        text = text[:-1]
    if selector.match_pattern is None:
        return _literal(text)
    prefix = ""
    if skip := multi_label_prefix(text, selector.cilium_version):
        # Cilium >= 1.19: two or more leading stars and a dot are one or more whole labels.
        prefix = f"(?:{_LABEL_CLASS}+[.])+"
        text = text[skip:]
    return prefix + "".join(f"{_LABEL_CLASS}*" if char == "*" else _literal(char) for char in text)


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


# -- Blocky ----------------------------------------------------------------------------------

BLOCKY_GROUP = "hushflow"
_BLOCKY_GROUP_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
# Blocky's list parser takes a name of labels of 1..63 of these, at most 255 characters.
_BLOCKY_MAX_NAME = 255
_BLOCKY_MAX_LABEL = 63
# Blocky reads lists line by line with Go's bufio.Scanner: a line over 64 KiB stops the reading
# of the list. Comment lines (a reason is policy text: its file name, its log value) are cut well
# below that.
_BLOCKY_MAX_COMMENT = 1000
# What Blocky has for each answer, and what the config says about it. Blocky's block types are
# zeroIP, nxDomain and custom IPs (blocking.blockType): it has no NODATA and no REFUSED.
_BLOCKY_TYPES: dict[BlockAnswer, tuple[str, str]] = {
    "nxdomain": ("nxDomain", "NXDOMAIN (with an SOA, for every query type)"),
    "null-ip": ("zeroIP", "A 0.0.0.0 / AAAA ::, and NXDOMAIN for other query types (Blocky's zeroIP)"),
    "nodata": ("nxDomain", "NXDOMAIN: Blocky has no NODATA block type; nxDomain is the nearest answer that "
               "fails as fast"),
    "refused": ("nxDomain", "NXDOMAIN: Blocky has no REFUSED block type; nxDomain is the nearest answer that "
                "fails as fast"),
}


@dataclass(frozen=True, slots=True)
class BlockyResult:
    """A Blocky configuration and what it does not say as asked.

    `not_applied`: entries left out of the denylist (only in a comment), with why.
    `answer_note`: set when Blocky has no block type for the answer asked for and a nearer one
    is written instead (`nodata`, `refused`); None when the answer is the one asked for.
    """

    text: str
    not_applied: tuple[tuple[BlockedName, str], ...]
    answer_note: str | None


def blocky_entry(selector: FQDNSelector) -> str:
    """The line of a Blocky list that blocks exactly the names `selector` selects.

    Blocky matches a query name lowercased and without its final dot. A plain name in a Blocky
    list blocks that name only (its subdomains are not blocked), as `matchName` does. Blocky's own
    wildcard `*.example.com` would be wrong twice over: it blocks `example.com` itself and every
    depth below it. So a pattern is written as a Blocky regex entry (`/.../`, Go RE2, matched
    against the whole name), the same regex as the CoreDNS one without the final dot; no spaces
    or `#` (which would start a comment in the list). Select-all patterns are not for here: see
    blocky_config.
    """
    if selector.match_pattern is None or "*" not in selector.match_pattern:
        _check_chars(selector, _selector_text(selector), _NAME_CHARS)
        return _selector_text(selector)[:-1]
    return "/(?i)^" + _pattern_regex_body(selector, final_dot=False) + "$/"


def _blocky_why_not(selector: FQDNSelector) -> str | None:
    if _selects_everything(selector):
        return "it selects every name; a resolver-wide block would stop all DNS for every client"
    if selector.match_pattern is not None and "*" in selector.match_pattern:
        return None
    name = _selector_text(selector)[:-1]
    labels = name.split(".")
    if not name or any(not label for label in labels):
        # Blocky rejects such a line; past maxErrorsPerSource (5) rejected lines it stops reading
        # the list, and every name after that point is lost.
        return "it is not a name a query can ask for (an empty label)"
    if len(name) > _BLOCKY_MAX_NAME or any(len(label) > _BLOCKY_MAX_LABEL for label in labels):
        return "it is longer than DNS allows"
    return None


def _blocky_block_type(answer: BlockAnswer, block_ips: Sequence[str]) -> tuple[str, str]:
    if not block_ips:
        return _BLOCKY_TYPES[answer]
    if answer != "null-ip":
        raise ValueError(f"block IPs are an answer of their own: use them with null-ip, not {answer}")
    parsed = []
    for text in block_ips:
        try:
            parsed.append(ipaddress.ip_address(text.strip()))
        except ValueError:
            raise ValueError(f"not an IP address for the Blocky block answer: {text!r}") from None
    shown = ", ".join(str(ip) for ip in parsed)
    families = {ip.version for ip in parsed}
    missing = "" if families == {4, 6} else f"; {'AAAA ::' if 6 not in families else 'A 0.0.0.0'} for the other family"
    return shown, f"A/AAAA {shown}{missing}, and NXDOMAIN for other query types"


def blocky_config(
    entries: Iterable[BlockedName],
    *,
    answer: BlockAnswer = "nxdomain",
    block_ips: Sequence[str] = (),
    ttl: int = 60,
    group: str = BLOCKY_GROUP,
) -> BlockyResult:
    """A Blocky (>= 0.24) configuration that answers denied names with `answer`.

    The `blocking:` section holds one denylist group (`group`) with one inline list (a YAML
    literal block, which Blocky reads as the list itself because it has a line break), the
    client group `default` using it, `blockType` and `blockTTL` (`ttl` seconds). Names are
    exact, patterns are regexes that select exactly what the policy selects (blocky_entry);
    select-all patterns are left out (a comment, and `not_applied`). `block_ips` with `null-ip`
    answers those addresses instead of 0.0.0.0/:: (Blocky's custom-IP block type).

    The output is sorted and stable; every entry has a comment line with its reason.
    """
    _check_answer(answer)
    _check_ttl(ttl)
    if not group or not set(group) <= _BLOCKY_GROUP_CHARS:
        raise ValueError(f"Blocky group name must be letters, digits, '-' or '_': {group!r}")
    block_type, answer_text = _blocky_block_type(answer, block_ips)
    ordered = sorted(entries, key=_entry_sort_key)

    lines_by_entry: dict[str, list[BlockedName]] = {}
    not_applied: list[tuple[BlockedName, str]] = []
    for entry in ordered:
        why = _blocky_why_not(entry.selector)
        if why is not None:
            not_applied.append((entry, why))
        else:
            lines_by_entry.setdefault(blocky_entry(entry.selector), []).append(entry)

    lines = [
        "# hushflow DNS block for Blocky (>= 0.24: denylists): the first line of defence for FQDN denies.",
        "# Merge this `blocking:` section into Blocky's config.yml, or put this file in Blocky's config folder.",
        f"# Denied names get: {answer_text}.",
        "# Exact names block only themselves; patterns are regexes that reproduce the policy's FQDN matching",
        "# exactly (Cilium: `*` stays inside one label), never Blocky's `*.name` wildcard (name and any depth).",
        f"# blockType and blockTTL apply to every list of this Blocky; the `default` client group gets `{group}`:",
        "# if your config has clientGroupsBlock entries, add it to each of them (merged files replace lists).",
        "# An allowlist entry in any group of a client wins over this list. It blocks these names for every",
        "# client of this resolver; hard-coded IPs and DNS-over-HTTPS bypass it (the L3 deny still applies).",
    ]
    for entry, why in not_applied:
        lines.append(f"# NOT APPLIED: {_comment_text(f'{entry.selector} - {why} - {entry.reason}')}")
    if not lines_by_entry:
        lines.append("# No denied names: nothing to block.")
        lines.append("blocking: {}")
        return BlockyResult("\n".join(lines) + "\n", tuple(not_applied), blocky_answer_note(answer, block_ips))

    lines += ["blocking:", "  denylists:", f"    {group}:", "      - |"]
    for entry_line, group_entries in lines_by_entry.items():
        for entry in group_entries:
            lines.append(f"        {_blocky_comment(f'{entry.reason} - {entry.selector}')}")
        lines.append(f"        {entry_line}")
    lines += [
        "  clientGroupsBlock:",
        "    default:",
        f"      - {group}",
        f'  blockType: "{block_type}"',
        f"  blockTTL: {ttl}s",
    ]
    return BlockyResult("\n".join(lines) + "\n", tuple(not_applied), blocky_answer_note(answer, block_ips))


def _blocky_comment(text: str) -> str:
    """A comment line of the list, at most _BLOCKY_MAX_COMMENT characters."""
    line = "# " + _comment_text(text)
    return line if len(line) <= _BLOCKY_MAX_COMMENT else line[: _BLOCKY_MAX_COMMENT - 3] + "..."


def blocky_answer_note(answer: BlockAnswer, block_ips: Sequence[str] = ()) -> str | None:
    """What the Blocky config answers instead of `answer`, when Blocky has no such block type."""
    if block_ips or answer not in ("nodata", "refused"):
        return None
    return f"Blocky has no {answer.upper()} block type: the Blocky config answers NXDOMAIN"
