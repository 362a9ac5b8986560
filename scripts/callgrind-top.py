#!/usr/bin/env python3
"""Self cost per function from a callgrind output file (callgrind_annotate
attributes everything to `clone` for dumps of multi-threaded programs).
Usage: scripts/callgrind-top.py FILE [N]"""
import re
import sys
from collections import Counter

names, cost, fn, skip_next = {}, Counter(), None, False
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"^fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2).strip()
        fn = names.get(m.group(1), m.group(1))
        continue
    m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2).strip()
        continue
    if line.startswith("calls="):
        skip_next = True
        continue
    if line[:1].isdigit() or line[:1] in "+-*":
        parts = line.split()
        if skip_next:
            skip_next = False
        elif fn is not None and len(parts) >= 2:
            cost[fn] += int(parts[1])
total = sum(cost.values())
n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
print(f"total self cost {total:,}")
for name, c in cost.most_common(n):
    print(f"{c:>14,} {100 * c / total:5.1f}%  {name[:150]}")
