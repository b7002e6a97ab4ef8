#!/usr/bin/env python3
"""Joins bench/soak.sh's samples and writes soak.csv, an SVG plot and a summary.

usage: soak_plot.py RESOURCES LOAD OUT_CSV OUT_SVG TITLE
RESOURCES: lines "t rss_kib fds"; LOAD: soak_load.py's CSV.
"""
import sys

res_path, load_path, out_csv, out_svg, title = sys.argv[1:6]
res = [tuple(int(x) for x in line.split()) for line in open(res_path) if line.strip()]
load = [line.strip().split(",") for line in open(load_path) if line[0].isdigit()]
rows = []
for i, (t, rss, fds) in enumerate(res):
    req, err, p50, p99 = (load[i - 1][1:] if 0 < i <= len(load) else ["0", "0", "0", "0"])
    rows.append((t, rss / 1024, fds, int(req), int(err), float(p50), float(p99)))

with open(out_csv, "w") as f:
    f.write("t_s,rss_mib,fds,requests,errors,p50_ms,p99_ms\n")
    for r in rows:
        f.write("%d,%.1f,%d,%d,%d,%.1f,%.1f\n" % r)

W, H, PAD = 900, 220, 50
series = [("RSS (MiB)", 1, "#1f77b4"), ("open fds", 2, "#2ca02c"), ("p99 latency (ms)", 6, "#d62728")]
tmax = max(r[0] for r in rows) or 1
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H * 3 + 40}" font-family="sans-serif" font-size="12">',
         f'<text x="{PAD}" y="18" font-size="14">{title}</text>']
for k, (name, col, color) in enumerate(series):
    top = 30 + k * H
    values = [r[col] for r in rows]
    vmax = max(values) * 1.1 or 1
    x = lambda t: PAD + (W - 2 * PAD) * t / tmax
    y = lambda v: top + H - 30 - (H - 50) * v / vmax
    pts = " ".join(f"{x(r[0]):.1f},{y(r[col]):.1f}" for r in rows)
    parts += [f'<rect x="{PAD}" y="{top + 20}" width="{W - 2 * PAD}" height="{H - 50}" fill="none" stroke="#ccc"/>',
              f'<text x="{PAD}" y="{top + 14}">{name}: first {values[0]:.1f}, last {values[-1]:.1f}, max {max(values):.1f}</text>',
              f'<text x="{PAD - 5}" y="{y(0):.1f}" text-anchor="end">0</text>',
              f'<text x="{PAD - 5}" y="{y(vmax / 1.1):.1f}" text-anchor="end">{vmax / 1.1:.0f}</text>',
              f'<text x="{W - PAD}" y="{top + H - 12}" text-anchor="end">{tmax} s</text>',
              f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>']
parts.append("</svg>")
open(out_svg, "w").write("\n".join(parts) + "\n")

loaded = rows[1:] or rows
total = sum(r[3] for r in loaded)
errs = sum(r[4] for r in loaded)
print(title)
print(f"requests {total}, errors {errs}")
print("RSS MiB first/after 1 window/last/max: %.1f / %.1f / %.1f / %.1f" % (rows[0][1], loaded[0][1], rows[-1][1], max(r[1] for r in rows)))
print("fds first/after 1 window/last/max: %d / %d / %d / %d" % (rows[0][2], loaded[0][2], rows[-1][2], max(r[2] for r in rows)))
print("p99 ms first window/last/max: %.1f / %.1f / %.1f" % (loaded[0][6], rows[-1][6], max(r[6] for r in loaded)))
