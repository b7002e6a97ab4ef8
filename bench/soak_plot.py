#!/usr/bin/env python3
"""Joins bench/soak.sh's samples and writes soak.csv, an SVG plot and a summary.

usage: soak_plot.py RESOURCES LOAD OUT_CSV OUT_SVG TITLE
RESOURCES: lines "t rss_kib fds [heap_in_use_bytes retained_bytes storage_bytes]"
(the last three read from gust's /metrics; 0 when missing); LOAD:
soak_load.py's CSV.
"""
import sys

MIB = 1024 * 1024
res_path, load_path, out_csv, out_svg, title = sys.argv[1:6]
res = []
for line in open(res_path):
    if line.strip():
        v = [int(float(x)) for x in line.split()]
        res.append(v + [0] * (6 - len(v)))
load = [line.strip().split(",") for line in open(load_path) if line[0].isdigit()]
rows = []
for i, (t, rss, fds, heap, retained, storage) in enumerate(res):
    req, err, p50, p99 = (load[i - 1][1:] if 0 < i <= len(load) else ["0", "0", "0", "0"])
    rows.append((t, rss / 1024, fds, int(req), int(err), float(p50), float(p99),
                 heap / MIB, retained / MIB, storage / MIB))

with open(out_csv, "w") as f:
    f.write("t_s,rss_mib,fds,requests,errors,p50_ms,p99_ms,heap_in_use_mib,retained_mib,storage_mib\n")
    for r in rows:
        f.write("%d,%.1f,%d,%d,%d,%.1f,%.1f,%.1f,%.1f,%.1f\n" % r)

W, H, PAD = 900, 220, 50
# Panels: (title, [(series name, column, colour)]); one y scale per panel.
panels = [
    ("memory (MiB)", [("RSS", 1, "#1f77b4"), ("heap in use", 7, "#9467bd"), ("retained by bounded holders", 8, "#ff7f0e")]),
    ("open fds", [("open fds", 2, "#2ca02c")]),
    ("p99 latency (ms)", [("p99 latency (ms)", 6, "#d62728")]),
]
panels[0] = (panels[0][0], [s for s in panels[0][1] if s[1] == 1 or any(r[s[1]] for r in rows)])
tmax = max(r[0] for r in rows) or 1
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H * len(panels) + 40 + 14 * len(panels[0][1])}" font-family="sans-serif" font-size="12">',
         f'<rect width="100%" height="100%" fill="white"/>',
         f'<text x="{PAD}" y="18" font-size="14">{title}</text>']
top = 30
for name, series in panels:
    vmax = max(r[col] for _, col, _ in series for r in rows) * 1.1 or 1
    x = lambda t: PAD + (W - 2 * PAD) * t / tmax
    y = lambda v: top + 14 * len(series) + H - 30 - (H - 50) * v / vmax
    for k, (label, col, color) in enumerate(series):
        values = [r[col] for r in rows]
        parts.append(f'<text x="{PAD}" y="{top + 14 + 14 * k}" fill="{color}">{label}: first {values[0]:.1f}, last {values[-1]:.1f}, max {max(values):.1f}</text>')
    box = top + 14 * len(series) + 20
    parts += [f'<rect x="{PAD}" y="{box}" width="{W - 2 * PAD}" height="{H - 50}" fill="none" stroke="#ccc"/>',
              f'<text x="{PAD - 5}" y="{y(0):.1f}" text-anchor="end">0</text>',
              f'<text x="{PAD - 5}" y="{y(vmax / 1.1):.1f}" text-anchor="end">{vmax / 1.1:.0f}</text>',
              f'<text x="{W - PAD}" y="{box + H - 35}" text-anchor="end">{tmax} s</text>']
    for label, col, color in series:
        pts = " ".join(f"{x(r[0]):.1f},{y(r[col]):.1f}" for r in rows)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
    top += H + 14 * len(series)
parts.append("</svg>")
open(out_svg, "w").write("\n".join(parts) + "\n")

loaded = rows[1:] or rows
total = sum(r[3] for r in loaded)
errs = sum(r[4] for r in loaded)


def at(frac):
    """The row nearest to frac of the run."""
    return min(rows, key=lambda r: abs(r[0] - frac * tmax))


print(title)
print(f"requests {total}, errors {errs}")
print("RSS MiB first/after 1 window/last/max: %.1f / %.1f / %.1f / %.1f" % (rows[0][1], loaded[0][1], rows[-1][1], max(r[1] for r in rows)))
if any(r[7] for r in rows):
    print("heap in use MiB at 0/25/50/75/100%%: %s" % " / ".join("%.1f" % at(f)[7] for f in (0, .25, .5, .75, 1)))
    print("retained by bounded holders MiB at 0/25/50/75/100%%: %s" % " / ".join("%.1f" % at(f)[8] for f in (0, .25, .5, .75, 1)))
    print("heap in use outside the holders MiB at 0/25/50/75/100%%: %s" % " / ".join("%.1f" % (at(f)[7] - at(f)[8]) for f in (0, .25, .5, .75, 1)))
    half, end = at(.5), rows[-1]
    if end[0] > half[0]:
        per_min = lambda col: (end[col] - half[col]) / ((end[0] - half[0]) / 60)
        print("second half, MiB per minute: heap in use %+.2f, retained %+.2f, outside the holders %+.2f"
              % (per_min(7), per_min(8), per_min(7) - per_min(8)))
    print("embedded data files MiB first/last: %.1f / %.1f" % (rows[0][9], rows[-1][9]))
print("RSS MiB at 0/25/50/75/100%%: %s" % " / ".join("%.1f" % at(f)[1] for f in (0, .25, .5, .75, 1)))
print("fds first/after 1 window/last/max: %d / %d / %d / %d" % (rows[0][2], loaded[0][2], rows[-1][2], max(r[2] for r in rows)))
print("p99 ms first window/last/max: %.1f / %.1f / %.1f" % (loaded[0][6], rows[-1][6], max(r[6] for r in loaded)))
