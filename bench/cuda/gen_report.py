"""The guides' table from `lowbit bench --gen --json` files, as markdown, and a plot of decode
tokens/s against length (one line per format and batch size) as a self-contained SVG.

    python3 bench/cuda/gen_report.py OUT.svg NAME=FILE.json [NAME=FILE.json ...]

No dependencies beyond the standard library (the plot is plain SVG: log2 length on x, tokens/s on
y, a colour per format, a dash pattern per batch size)."""
import json
import math
import sys

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
DASHES = ["", "6,3", "2,3", "8,3,2,3"]


def table(runs):
    print("| format | batch | prefill | decode | prefill tok/s | decode tok/s | device memory |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, rows in runs:
        for r in rows:
            print(f"| {name} | {r['batch']} | {r['prefill_len']} | {r['decode_len']} | "
                  f"{r['prefill_tokens_per_s']:.0f} | {r['decode_tokens_per_s']:.1f} | "
                  f"{r['memory_bytes'] / 1e9:.2f} GB |")


def plot(path, runs):
    W, H, L, R, T, B = 760, 440, 70, 210, 30, 50
    rows = [r for _, rs in runs for r in rs]
    xs = [math.log2(r["decode_len"]) for r in rows]
    x0, x1 = min(xs), max(xs)
    y1 = max(r["decode_tokens_per_s"] for r in rows) * 1.08
    X = lambda v: L + (math.log2(v) - x0) / max(x1 - x0, 1e-9) * (W - L - R)
    Y = lambda v: H - B - v / y1 * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="18" font-size="14">decode tokens/s (all sequences) against prefill = decode length</text>']
    step = 10 ** math.floor(math.log10(y1 / 4))
    step *= 5 if y1 / step > 20 else 2 if y1 / step > 8 else 1
    for k in range(int(y1 / step) + 1):
        y = Y(k * step)
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{k * step:g}</text>')
    for e in range(int(x0), int(x1) + 1):
        x = X(2 ** e)
        out.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{2 ** e}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">length (tokens)</text>')
    batches = sorted({r["batch"] for r in rows})
    ly = T + 10
    for i, (name, rs) in enumerate(runs):
        for j, b in enumerate(batches):
            pts = [(X(r["decode_len"]), Y(r["decode_tokens_per_s"])) for r in rs if r["batch"] == b]
            if not pts:
                continue
            dash = DASHES[j % len(DASHES)]
            style = f'stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="2" fill="none"' + \
                (f' stroke-dasharray="{dash}"' if dash else "")
            out.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}" {style}/>')
            out.append(f'<line x1="{W - R + 12}" x2="{W - R + 42}" y1="{ly}" y2="{ly}" {style}/>')
            out.append(f'<text x="{W - R + 48}" y="{ly + 4}">{name}, batch {b}</text>')
            ly += 16
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    if len(sys.argv) < 3 or any("=" not in a for a in sys.argv[2:]):
        sys.exit(__doc__)
    runs = []
    for a in sys.argv[2:]:
        name, path = a.split("=", 1)
        runs.append((name, json.load(open(path))))
    table(runs)
    plot(sys.argv[1], runs)


if __name__ == "__main__":
    main()
