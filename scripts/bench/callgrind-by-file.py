#!/usr/bin/env python3
"""Instructions per request by source file, from two callgrind files.

    callgrind-by-file.py HEALTHZ.out COLD.out N

Sums each file's self costs by the source file the instructions came from,
inlined code included (callgrind's fi=/fe= records), so that a thin-LTO
binary's giant inlined functions still split into crates. Needs a build with
line tables (CARGO_PROFILE_RELEASE_DEBUG=line-tables-only); without them
everything lands in "?". scripts/profile-cold.sh calls it.
"""
import re, sys, collections
def by_file(path):
    names = {"fl": {}, "fi": {}, "fe": {}, "fn": {}, "cfl": {}, "cfi": {}, "cfn": {}, "ob": {}, "cob": {}}
    fl = cur = "?"
    fn = "?"
    totals = collections.Counter()
    funcs = collections.Counter()
    skip = False
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"^(fl|fi|fe|fn|cfl|cfi|cfn|ob|cob)=\((\d+)\)(?: (.*))?$", line)
        if m:
            kind, ident, name = m.groups()
            table = names["fl"] if kind in ("fl", "fi", "fe", "cfl", "cfi") else names[kind]
            if name is not None:
                table[ident] = name
            name = table.get(ident, "?")
            if kind == "fl":
                fl = cur = name
            elif kind in ("fi", "fe"):
                cur = name
            elif kind == "fn":
                fn = name; cur = fl
            continue
        if line.startswith("calls="):
            skip = True
            continue
        if line and (line[0].isdigit() or line[0] in "+-*"):
            if skip:
                skip = False
                continue
            parts = line.split()
            if len(parts) >= 3:
                cost = int(parts[2])
            elif len(parts) == 2:
                cost = int(parts[1])
            else:
                continue
            totals[cur] += cost
            funcs[fn] += cost
    return totals, funcs
def group(f):
    f = f or "?"
    m = re.search(r"registry/src/[^/]+/([A-Za-z0-9_\-]+?)-\d+\.\d+", f)
    if m: return "crate " + m.group(1)
    m = re.search(r"/work/main/crates/([a-z]+)/src/(.*)", f)
    if m: return f"appauth-{m.group(1)}::{m.group(2)}"
    if "/rustc/" in f or "library/" in f:
        m = re.search(r"library/([a-z_]+)/", f); return "std " + (m.group(1) if m else "")
    if "aws-lc" in f: return "aws-lc C"
    return f
n = int(sys.argv[3])
h, hf = by_file(sys.argv[1]); c, cf = by_file(sys.argv[2])
gh, gc = collections.Counter(), collections.Counter()
for k, v in h.items(): gh[group(k)] += v
for k, v in c.items(): gc[group(k)] += v
print(f"instructions per request by source: /healthz {sum(h.values())/n:,.0f}, cold {sum(c.values())/n:,.0f}")
print(f"{'added':>10} {'healthz':>9} {'cold':>9}  source")
rows = sorted(set(gh) | set(gc), key=lambda k: -(gc[k] - gh[k]))
for k in rows[:40]:
    print(f"{(gc[k]-gh[k])/n:>10,.0f} {gh[k]/n:>9,.0f} {gc[k]/n:>9,.0f}  {k[:100]}")
# The moonshot, by file as it was first counted: what a cold request
# adds outside aws-lc's C (aws-lc-rs's Rust, glibc's malloc and memset that
# aws-lc calls, and all of ours count).
added = (sum(c.values()) - sum(h.values())) / n
aws_lc = (gc["aws-lc C"] - gh["aws-lc C"]) / n
print()
print(f"outside aws-lc's C: {added - aws_lc:,.0f} a request (the moonshot: at most 12,000)")
