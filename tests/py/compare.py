"""`lowbit compare BASE MODEL... -f FILE`: the shared model against two quantized copies (LLM.int8
and 4-bit RTN, quick to make) on two windows of the in-domain text.
  - each model's perplexity and KL equal `perplexity --kl-base` on the same windows (the numbers
    come from one function; the KL math is checked against long double in tests/test_model.c);
  - sizes equal the tensor bytes the safetensors headers declare (read here independently);
  - the SVG parses, has a point a model plus the base, and places them by bits per weight (x) and
    by KL on a log scale (y: larger KL higher up, decades evenly spaced);
  - bad input: no model, no file, a model of another vocabulary, a plot in a missing folder."""
import json
import math
import os
import struct
import xml.etree.ElementTree as ET

from common import POCKET, lowbit, out, run_tests, shared

ARGS = ("-f", shared("data/pocket-valid.txt"), "--ctx", "64", "--max-windows", "2")
SVG_NS = "{http://www.w3.org/2000/svg}"


def tensor_bytes(folder):
    """Sum of the data sizes the safetensors headers of a folder declare."""
    total = 0
    for name in os.listdir(folder):
        if name.endswith(".safetensors"):
            with open(os.path.join(folder, name), "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
            total += sum(v["data_offsets"][1] - v["data_offsets"][0]
                         for k, v in header.items() if k != "__metadata__")
    return total


def is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def models():
    i8, q4 = out("cmp-int8"), out("cmp-rtn4")
    lowbit("quantize", POCKET, i8, "--method", "int8")
    lowbit("quantize", POCKET, q4, "--method", "rtn", "--bits", "4", "--group", "128")
    return i8, q4


def test_compare_numbers_and_plot():
    i8, q4 = models()
    svg = os.path.join(out("cmp-plot"), "kl.svg")
    os.makedirs(os.path.dirname(svg))
    r = json.loads(lowbit("compare", POCKET, i8, q4, *ARGS, "--svg", svg, "--json").stdout)
    print(json.dumps(r)[:400])
    assert r["base"] == POCKET and r["tokens"] == 2 * 64 and r["windows"] == 2, r
    assert [m["model"] for m in r["models"]] == [i8, q4], r
    for m in r["models"]:
        one = json.loads(lowbit("perplexity", m["model"], *ARGS, "--kl-base", POCKET, "--json").stdout)
        for key in ("ppl", "ppl_stderr", "kl_mean", "kl_stderr", "kl_median", "kl_p99", "kl_max", "same_top"):
            assert m[key] == one[key], (key, m, one)
        assert r["base_ppl"] == one["base_ppl"], (r, one)
        assert m["size_bytes"] == tensor_bytes(m["model"]), m
        assert abs(m["bits_per_weight"] - 8 * m["size_bytes"] / m["params"]) < 1e-9, m
    assert r["base_size_bytes"] == tensor_bytes(POCKET) and abs(r["base_bits_per_weight"] - 16) < 0.01, r
    # LLM.int8 moves the distributions far less than 4-bit RTN, and is larger
    a, b = r["models"]
    assert 0 < a["kl_mean"] < b["kl_mean"] and a["bits_per_weight"] > b["bits_per_weight"], r

    root = ET.parse(svg).getroot()
    assert root.tag == SVG_NS + "svg", root.tag
    dots = root.findall(SVG_NS + "circle")
    assert len(dots) == 3, len(dots)
    base_dot, da, db = dots  # the base first (hollow, on the axis), then the models in order
    assert base_dot.get("fill") == "white" and da.get("fill") != "white", [d.attrib for d in dots]
    x = [float(d.get("cx")) for d in dots]
    y = [float(d.get("cy")) for d in dots]
    assert x[0] > x[1] > x[2], x  # 16 > int8's ~10.8 > 4-bit's ~8.2 bits per weight
    assert y[2] < y[1] < y[0], y  # larger KL higher up; the base (KL 0) lowest, on the axis
    # a log scale: the height between the two models is proportional to log10 of their KL ratio,
    # at the spacing of the decade ticks
    ticks = sorted(float(t.get("y")) - 4 for t in root.findall(SVG_NS + "text")
                   if t.get("text-anchor") == "end" and t.text and is_number(t.text) and float(t.text) > 0)
    decade = ticks[1] - ticks[0]
    want = math.log10(b["kl_mean"] / a["kl_mean"]) * decade
    assert abs((y[1] - y[2]) - want) < 0.2, (y, want)  # coordinates are written to 0.1 px
    labels = [t.text for t in root.findall(SVG_NS + "text")]
    for name in ("cmp-int8", "cmp-rtn4", "pocket-llama-48m"):
        assert name in labels, (name, labels)

    p = lowbit("compare", POCKET, i8, q4, *ARGS)
    lines = p.stdout.splitlines()
    assert lines[0].startswith("| model | size | bpw | ppl |"), p.stdout
    assert lines[2].startswith("| pocket-llama-48m (base) |") and lines[3].startswith("| cmp-int8 |"), p.stdout


def test_compare_errors():
    p = lowbit("compare", POCKET, *ARGS, check=False)
    assert p.returncode == 2 and "at least one MODEL" in p.stderr, p.stderr
    p = lowbit("compare", POCKET, POCKET, check=False)
    assert p.returncode == 2 and "-f FILE" in p.stderr, p.stderr
    p = lowbit("compare", POCKET, POCKET, *ARGS, "--max-windows", "x", check=False)
    assert p.returncode == 2 and "--max-windows" in p.stderr, p.stderr
    tiny = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "tiny", "llama")
    p = lowbit("compare", POCKET, tiny, *ARGS, check=False)
    assert p.returncode == 1 and tiny in p.stderr and "vocabulary" in p.stderr, p.stderr
    d = out("cmp-missing")
    p = lowbit("compare", POCKET, POCKET, *ARGS, "--svg", os.path.join(d, "kl.svg"), check=False)
    assert p.returncode == 1 and d in p.stderr, p.stderr
    assert not os.path.exists(d), "nothing written for a plot into a missing folder"


if __name__ == "__main__":
    run_tests([test_compare_numbers_and_plot, test_compare_errors])
