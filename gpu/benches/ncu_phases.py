#!/usr/bin/env python3
"""Where a kernel's warps stall, phase by phase, from ncu's per-instruction CSV.

Reads the CSV that `gpu/device-run-ncu.sh` writes (`ncu --import ... --page source --csv
--print-source sass`: one table per profiled kernel) and prints, for each kernel named on the
command line (all kernels if none), its stall-reason totals and then its SASS cut at every
`BAR.SYNC` into phases: each phase's share of the warp stall samples and of the executed warp
instructions, its top stall reasons and its most frequent opcodes. A phase with a large sample
share and a small instruction share waits (on memory: `long_sb`; on other warps: `barrier`);
one with a large instruction share issues too much.

Usage: python3 gpu/benches/ncu_phases.py logs/ncu-src.csv [kernel ...]
"""
import collections
import csv
import sys


def tables(path):
    out, kern, hdr = collections.defaultdict(list), None, None
    for r in csv.reader(open(path)):
        if not r:
            continue
        if r[0] == "Kernel Name":
            kern, hdr = r[1], None
        elif r[0] == "Address":
            hdr = r
        elif hdr and kern:
            out[kern].append(dict(zip(hdr, r)))
    return out


def num(x):
    try:
        return float(x)
    except ValueError:
        return 0.0


def opcode(src):
    parts = src.split()
    if not parts:
        return "?"
    return parts[1] if parts[0].startswith("@") and len(parts) > 1 else parts[0]


def report(name, ins):
    samples = "Warp Stall Sampling (All Samples)"
    tot = sum(num(i[samples]) for i in ins) or 1.0
    exe = sum(num(i["Instructions Executed"]) for i in ins) or 1.0
    stalls = [h for h in ins[0] if h.startswith("stall_") and "Not Issued" not in h]
    print(f"{name}: {len(ins)} SASS instructions, {tot:.0f} stall samples, {exe:.3g} warp instructions")
    agg = sorted(((sum(num(i[s]) for i in ins), s) for s in stalls), reverse=True)
    print("  " + " ".join(f"{s[6:]}={v / tot * 100:.1f}%" for v, s in agg if v / tot > 0.01))
    phases, cur = [], []
    for i in ins:
        cur.append(i)
        if "BAR.SYNC" in i["Source"] or "BAR.RED" in i["Source"]:
            phases.append(cur)
            cur = []
    phases.append(cur)
    for k, p in enumerate(phases):
        s = sum(num(i[samples]) for i in p)
        if not p or s / tot < 0.01:
            continue
        e = sum(num(i["Instructions Executed"]) for i in p)
        top = sorted(((sum(num(i[st]) for i in p), st) for st in stalls), reverse=True)[:4]
        ops = collections.Counter(opcode(i["Source"]) for i in p).most_common(5)
        print(
            f"  phase {k:2} ({len(p):4} instr.) samples {s / tot * 100:5.1f}%  executed {e / exe * 100:5.1f}%  | "
            + " ".join(f"{st[6:]}={v / s * 100:.0f}%" for v, st in top)
            + " | "
            + " ".join(f"{o}:{n}" for o, n in ops)
        )


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    t = tables(sys.argv[1])
    for name in sys.argv[2:] or sorted(t):
        if name not in t:
            sys.exit(f"no kernel {name} in {sys.argv[1]} (has: {', '.join(sorted(t))})")
        report(name, t[name])


if __name__ == "__main__":
    main()
