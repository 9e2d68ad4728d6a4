#!/usr/bin/env python3
"""zt's tables from an nssbench results dir: zt and files+zt beside files and
SSSD measured in the same run, with ratios.

    zt_tables.py HARNESS_DIR RESULTS_DIR

Reuses the (patched) harness summarize.py's load(): every cell is the median
over the REPS independent runs of each run's median; [min-max] of run medians.
Ratios are between those medians: "8.1x faster" = the other backend's time
divided by zt's.
"""
import glob
import importlib.util
import os
import re
import statistics
import sys
from collections import defaultdict

H, R = sys.argv[1], sys.argv[2]
sys.argv = [sys.argv[0], R]  # summarize.py reads its results dir from argv[1]
spec = importlib.util.spec_from_file_location("summarize", os.path.join(H, "summarize.py"))
S = importlib.util.module_from_spec(spec)
spec.loader.exec_module(S)

COLS = [("files", "files"), ("sssd", "SSSD"), ("zt", "zt"), ("ztfiles", "files+zt")]
OPS = [("pwnam", "getpwnam hit"), ("pwuid", "getpwuid"), ("grnam", "getgrnam"),
       ("grouplist", "getgrouplist"), ("miss", "miss (getpwnam)")]
DS_LABEL = {"small": "small data set (30 users)",
            "large": "large data set (100k users / 20k groups; u050000 in 200 groups)"}


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def ratio(zt, other, higher_is_better=False):
    """How zt compares with `other`."""
    if zt is None or other is None or zt == 0 or other == 0:
        return "–"
    r = zt / other if higher_is_better else other / zt
    if r >= 1:
        return f"{r:.3g}x faster" if not higher_is_better else f"{r:.3g}x"
    return f"{1 / r:.3g}x slower" if not higher_is_better else f"{r:.3g}x"


def ngroups(B, DS):
    seen = set()
    for bt in glob.glob(f"{R}/{B}-{DS}/rep*/bench.txt"):
        for line in open(bt):
            m = re.search(r"op=grouplist threads=1 .*ngroups=(\d+)", line)
            if m:
                seen.add(int(m.group(1)))
    return "/".join(str(x) for x in sorted(seen)) or "–"


def floor():
    vals = defaultdict(list)
    path = os.path.join(R, "floor.txt")
    if not os.path.exists(path):
        return {}
    for line in open(path):
        m = re.match(r"(.+?)\s+median\s+([\d.]+) ns", line)
        if m:
            vals[m.group(1).strip()].append(float(m.group(2)))
    return {k: statistics.median(v) for k, v in vals.items()}


def main():
    data, extra = S.load()
    out = []
    reps = max((len(v) for d in data.values() for v in d.values()), default=0)
    out.append(f"Cells: median over {reps} independent runs of each run's median "
               "(5 timed repeats per run) [min–max of run medians]. "
               "Ratios compare those medians; \"faster\" = the other backend's time / zt's.\n")
    for DS in S.DATASETS:
        if not any(data.get((B, DS)) for B, _ in COLS):
            continue
        out.append(f"\n### {DS_LABEL[DS]}: one thread, time per lookup (warm)\n")
        out.append("| lookup | " + " | ".join(l for _, l in COLS) +
                   " | zt vs files | zt vs SSSD | files+zt vs files | files+zt vs SSSD |")
        out.append("|---|" + "---|" * (len(COLS) + 4))
        for op, label in OPS:
            cells, m = [], {}
            for B, _ in COLS:
                d = data.get((B, DS), {})
                v = d.get(("st", op), []) if d else []
                m[B] = med(v)
                cells.append(S.cell(v) if v else "–")
            cells += [ratio(m["zt"], m["files"]), ratio(m["zt"], m["sssd"]),
                      ratio(m["ztfiles"], m["files"]), ratio(m["ztfiles"], m["sssd"])]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("| groups returned by getgrouplist | " +
                   " | ".join(ngroups(B, DS) for B, _ in COLS) + " | | | | |")

        out.append(f"\n### {DS_LABEL[DS]}: two threads, total lookups/s (speedup over one thread)\n")
        out.append("| lookup | " + " | ".join(l for _, l in COLS) + " | zt vs files | zt vs SSSD |")
        out.append("|---|" + "---|" * (len(COLS) + 2))
        for op, label in OPS:
            cells, m = [], {}
            for B, _ in COLS:
                d = data.get((B, DS), {})
                if not d:
                    cells.append("–"); m[B] = None; continue
                crash, mt, st = d[("mtcrash", op)], d[("mt", op)], d[("st", op)]
                wrong = sum(d[("mtwrong", op)])
                if crash:
                    cells.append(f"FAILS ({'/'.join(sorted(set(crash)))} in {len(crash)} runs)")
                    m[B] = None
                    continue
                if not mt or not st:
                    cells.append("–"); m[B] = None; continue
                tp = statistics.median(mt)
                sp = tp / (1e9 / statistics.median(st))
                m[B] = tp
                c = f"{tp / 1e3:,.0f}k (x{sp:.2f})"
                if wrong:
                    c += f" WRONG RESULTS: {wrong}"
                cells.append(c)
            cells += [ratio(m["zt"], m["files"], True), ratio(m["zt"], m["sssd"], True)]
            out.append(f"| {label} | " + " | ".join(cells) + " |")

        out.append(f"\n### {DS_LABEL[DS]}: instructions per lookup (callgrind, client side) / syscalls per lookup (strace)\n")
        out.append("| lookup | " + " | ".join(l for _, l in COLS) +
                   " | zt vs files (instr.) | zt vs SSSD (instr.) |")
        out.append("|---|" + "---|" * (len(COLS) + 2))
        for op, label in OPS:
            cells, m = [], {}
            for B, _ in COLS:
                ir = extra.get((B, DS, "ir", op))
                sc = extra.get((B, DS, "sc", op))
                m[B] = ir
                s = f"{ir:,.0f}" if ir is not None else "–"
                s += f" / {sc[0]:.3g}" if sc is not None else " / –"
                cells.append(s)
            cells += [ratio(m["zt"], m["files"]).replace("faster", "fewer").replace("slower", "more"),
                      ratio(m["zt"], m["sssd"]).replace("faster", "fewer").replace("slower", "more")]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        mix = []
        for B, lab in COLS:
            sc = extra.get((B, DS, "sc", "pwnam"))
            if sc and sc[1]:
                mix.append(f"{lab}: " + ", ".join(f"{k} {v:.3g}" for k, v in
                                                  sorted(sc[1].items(), key=lambda x: -x[1])))
        if mix:
            out.append("\nSyscalls per getpwnam hit: " + "; ".join(mix) + ".")

    f = floor()
    if f:
        out.append("\n### glibc floor (same run, same namespace setup; median of run medians)\n")
        out.append("| what | ns |")
        out.append("|---|---|")
        for k, v in f.items():
            out.append(f"| {k} | {v:.0f} |")
    print("\n".join(out))


main()
