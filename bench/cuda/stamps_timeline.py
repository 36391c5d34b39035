#!/usr/bin/env python3
"""Per-launch timelines from raw GEMV block stamps (-DLB_GEMV_STAMPS builds).

The kernel sandbox (SANDBOX_STAMPS_DUMP=DIR) and the lab (LAB_STAMPS_DUMP=DIR) write each record
as 6 little-endian uint64: the weight's codes address, the block, and %globaltimer ns at the
block's start, its PDL wait's return, its third stamp (staged kernels: the rows landed; the
register GEMV: steps done) and its sums ready. A launch is the run of one address's records
until every block is in. For ten launches from the middle of the file, times in us from the
launch's first block start: min / median / p90 / max over the blocks, and the next launch's start.

usage: stamps_timeline.py FILE.bin...
"""
import sys

import numpy as np


def launches(path):
    a = np.fromfile(path, dtype=np.uint64).reshape(-1, 6).astype(np.float64)
    a = a[np.argsort(a[:, 2], kind="stable")]
    nb = int(a[:, 1].max()) + 1
    out, open_ = [], {}
    for r in a:
        cur = open_.get(r[0])
        if cur is None or len(cur) >= nb:
            cur = open_[r[0]] = []
            out.append(cur)
        cur.append(r)
    return [np.array(l) for l in out if len(l) == nb], nb


def main(paths):
    for path in paths:
        ls, nb = launches(path)
        mid = len(ls) // 2
        pick = range(max(0, mid - 5), min(len(ls) - 1, mid + 5))
        print(f"{path}: {len(ls)} whole launches of {nb} blocks")
        print("| launch | start | wait | third | done | next start |")
        print("| ---: | --- | --- | --- | --- | ---: |")
        for i in pick:
            s0 = ls[i][:, 2].min()
            q = lambda c: "/".join(f"{v:.2f}" for v in np.percentile((ls[i][:, c] - s0) / 1e3, [0, 50, 90, 100]))
            print(f"| {i} | {q(2)} | {q(3)} | {q(4)} | {q(5)} | {(ls[i + 1][:, 2].min() - s0) / 1e3:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
