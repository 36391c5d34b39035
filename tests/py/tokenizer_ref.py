"""lowbit tokenize against the `tokenizers` package (the reference, 0.23.2) on real files:
  - ids of the three tokenizer families (pocket-llama: SentencePiece-style BPE with byte fallback and
    no pre-tokenizer; Llama-3.1 and Qwen3: regex + byte-level BPE, Qwen3 with NFC) for WikiText-2
    test (whole file), pocket-valid.txt and tests/data/unicode-torture.txt (invalid UTF-8 included:
    the reference sees the file decoded with errors="replace", as lowbit does);
  - every code point in contexts that probe the regex classes (\\s, \\p{L}, \\p{N}), contractions and
    NFC (planes 0-1 and samples of the others; LOWBIT_TOKENIZER_FULL_SWEEP=1 for all of them);
  - decoding: lowbit's decode (whole and streamed) equals tokenizers' decode(ids,
    skip_special_tokens=True), and decode(encode(text)) gives the text back where the tokenizer can;
  - small synthetic tokenizer.json files for the parts the real ones do not use (NFD/NFKC/NFKD,
    Split behaviours, ByteLevel's own regex, Metaspace, added-token options, other decoders).
A mismatch prints the first differing position with the tokens around it."""
import json
import os
import subprocess
import time
import unicodedata

from tokenizers import Tokenizer

from common import BIN, fresh_tmp, run_tests, shared

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZERS = {
    "pocket": shared("models/pocket-llama-48m"),
    "llama3": shared("tokenizers/llama3_1"),
    "qwen3": shared("tokenizers/qwen3"),
}
TEXTS = {
    "wiki.test.raw": shared("data/wikitext-2-raw/wiki.test.raw"),
    "pocket-valid.txt": shared("data/pocket-valid.txt"),
    "unicode-torture.txt": os.path.join(HERE, "../data/unicode-torture.txt"),
}
REF = {name: Tokenizer.from_file(os.path.join(d, "tokenizer.json")) for name, d in TOKENIZERS.items()}
TMP = fresh_tmp()


def run(*args, stdin=None):
    p = subprocess.run([BIN, "tokenize", *args], capture_output=True, input=stdin)
    if p.returncode != 0:
        raise AssertionError(f"lowbit tokenize {' '.join(args)} exited {p.returncode}: "
                             f"{p.stderr.decode(errors='replace')}")
    return p


def lowbit_ids(d, path, *flags):
    p = run(d, "-f", path, "--ids", "--time", *flags)
    return [int(x) for x in p.stdout.split()], p.stderr.decode().strip()


def read_text(path):
    return open(path, "rb").read().decode("utf-8", errors="replace")


_REF_IDS = {}


def ref_ids(name, tname):
    """tokenizers' ids of a text file (memoized), and the seconds the encode took."""
    if (name, tname) not in _REF_IDS:
        text = read_text(TEXTS[tname])
        t0 = time.perf_counter()
        ids = REF[name].encode(text).ids
        _REF_IDS[name, tname] = ids, time.perf_counter() - t0
    return _REF_IDS[name, tname]


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return path


def same_ids(got, ref, tok, what):
    if got == ref:
        return
    i = next((k for k in range(min(len(got), len(ref))) if got[k] != ref[k]), min(len(got), len(ref)))
    lo = max(0, i - 8)
    show = lambda ids: [(x, tok.id_to_token(x)) for x in ids[lo:i + 8]]  # noqa: E731
    raise AssertionError(f"{what}: {len(got)} ids vs {len(ref)} from tokenizers; first difference "
                         f"at {i}\n  lowbit:     {show(got)}\n  tokenizers: {show(ref)}")


def same_text(got, ref, what):
    if got == ref:
        return
    i = next((k for k in range(min(len(got), len(ref))) if got[k] != ref[k]), min(len(got), len(ref)))
    raise AssertionError(f"{what}: texts differ at character {i} of {len(ref)}:\n"
                         f"  lowbit:   {got[max(0, i - 40):i + 40]!r}\n"
                         f"  expected: {ref[max(0, i - 40):i + 40]!r}")


# ---- real tokenizers on real files ----------------------------------------------------------------

def test_ids_match_reference():
    for name, d in TOKENIZERS.items():
        for tname, path in TEXTS.items():
            ref, py = ref_ids(name, tname)
            got, timing = lowbit_ids(d, path)
            same_ids(got, ref, REF[name], f"{name} on {tname}")
            print(f"     {name:7s} {tname:20s} {len(ref):7d} ids  tokenizers {py:.3f} s  lowbit {timing}")


def test_special_tokens_by_default():
    # pocket-llama and Llama-3 add BOS through their TemplateProcessing; Qwen3 adds nothing
    path = write("hello.txt", "Hello world")
    first = {"pocket": 1, "llama3": 128000}
    for name, d in TOKENIZERS.items():
        ids, _ = lowbit_ids(d, path)
        assert ids == REF[name].encode("Hello world").ids, name
        assert (ids[0] == first[name]) if name in first else ids[0] not in (151643, 151644), (name, ids)
        bare, _ = lowbit_ids(d, path, "--no-special")
        assert bare == REF[name].encode("Hello world", add_special_tokens=False).ids, name
    pocket = TOKENIZERS["pocket"]
    for text, ids in [("The history of the city", [1, 415, 3340, 302, 272, 2990]),
                      ("Hello world", [1, 22557, 1526]), ("a\nb\n\nc", [1, 264, 13, 28726, 13, 13, 28717])]:
        got = [int(x) for x in run(pocket, "-p", text, "--ids").stdout.split()]
        assert got == ids, (text, got)


def test_special_token_text():
    text = "<s>Hi</s> <|begin_of_text|>x<|eot_id|> <|im_start|>user\n<think>y</think><|im_end|>"
    path = write("special.txt", text)
    for name, d in TOKENIZERS.items():
        got, _ = lowbit_ids(d, path)
        same_ids(got, REF[name].encode(text).ids, REF[name], f"{name} special-token text")
        # --split-special: the text of special tokens is plain text (tokenizers' encode_special_tokens)
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        tok.encode_special_tokens = True
        got, _ = lowbit_ids(d, path, "--split-special")
        same_ids(got, tok.encode(text).ids, tok, f"{name} --split-special")


def test_decode_matches_reference():
    for name, d in TOKENIZERS.items():
        for tname, path in TEXTS.items():
            ids = ref_ids(name, tname)[0]
            ref = REF[name].decode(ids, skip_special_tokens=True)
            whole = run(d, "-f", path, "--roundtrip").stdout.decode("utf-8")
            same_text(whole, ref, f"{name} decode of {tname}")
            streamed = run(d, "-f", path, "--roundtrip", "--stream").stdout.decode("utf-8")
            same_text(streamed, ref, f"{name} streamed decode of {tname}")
            ref_keep = REF[name].decode(ids, skip_special_tokens=False)
            keep = run(d, "-f", path, "--roundtrip", "--keep-special", "--stream").stdout.decode("utf-8")
            same_text(keep, ref_keep, f"{name} streamed decode with special tokens of {tname}")
    # --decode takes ids; every single id decodes as in tokenizers (byte tokens alone give U+FFFD)
    for name, d in TOKENIZERS.items():
        n = REF[name].get_vocab_size()
        sample = list(range(0, n, max(1, n // 3000))) + list(range(n - 300, n))
        got = run(d, "-p", " ".join(map(str, sample)), "--decode", "--keep-special").stdout.decode()
        same_text(got, REF[name].decode(sample, skip_special_tokens=False), f"{name} --decode")
        for i in [0, 1, 259, n // 2, n - 1]:
            one = run(d, "-p", str(i), "--decode", "--keep-special").stdout.decode()
            same_text(one, REF[name].decode([i], skip_special_tokens=False), f"{name} decode [{i}]")


def test_roundtrip_gives_the_text_back():
    # Where it does not: Qwen3 normalizes to NFC; text that looks like a special token becomes that
    # token (skipped when decoding); pocket-llama's Prepend adds a "▁" to each piece of text after
    # an added token; invalid UTF-8 comes back as U+FFFD, as the reference read it.
    for tname in ["wiki.test.raw", "pocket-valid.txt"]:
        text = read_text(TEXTS[tname])
        for name, d in TOKENIZERS.items():
            expect = REF[name].normalizer.normalize_str(text) if name == "qwen3" else text
            got = run(d, "-f", TEXTS[tname], "--roundtrip").stdout.decode("utf-8")
            same_text(got, expect, f"{name} decode(encode({tname}))")
    text = read_text(TEXTS["unicode-torture.txt"])
    got = run(TOKENIZERS["llama3"], "-f", TEXTS["unicode-torture.txt"], "--roundtrip", "--no-special",
              "--keep-special").stdout.decode("utf-8")
    same_text(got, text, "llama3 decode(encode(torture)) keeping special tokens")


def sweep_text(full):
    """Every code point (planes 0-1, samples and the Unicode 15/16 letters of the others) in contexts
    for letters, numbers, spaces, contractions and composition."""
    cps = [c for c in range(0x20000) if not 0xD800 <= c <= 0xDFFF]
    if full:
        cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    else:
        cps += list(range(0x20000, 0x110000, 61)) + list(range(0x2EBF0, 0x2EE5E)) + \
            list(range(0x31350, 0x323B0, 7)) + [0x2B739]
    return "".join(f"a{chr(c)}b {chr(c)}1{chr(c)}\u0301'{chr(c)} e\u0301{chr(c)}\n" for c in cps)


def test_every_code_point():
    full = os.environ.get("LOWBIT_TOKENIZER_FULL_SWEEP") == "1"
    text = sweep_text(full)
    path = write("sweep.txt", text)
    edges = "".join(f"x{c}y {c} {c}{c}\n" for c in "\x85\xa0\u1680\u180e\u2028\u2029\u200b\ufeff\u3000\u202f\u205f\x0b\x0c\x1c\x1f")
    epath = write("edges.txt", edges * 3)
    for name, d in TOKENIZERS.items():
        got, timing = lowbit_ids(d, epath)
        same_ids(got, REF[name].encode(edges * 3).ids, REF[name], f"{name} on white-space edge cases")
        t0 = time.perf_counter()
        ref = REF[name].encode(text).ids
        py = time.perf_counter() - t0
        got, timing = lowbit_ids(d, path)
        same_ids(got, ref, REF[name], f"{name} on the code point sweep")
        print(f"     {name:7s} sweep {len(text)} chars  tokenizers {py:.2f} s  lowbit {timing}")


# ---- synthetic tokenizers ------------------------------------------------------------------------

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_CHARS = bytes_to_unicode()
BYTELEVEL_DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


def synthetic(name, normalizer=None, pre=None, added=(), decoder=None, post=None, model=None):
    """A tokenizer.json whose vocabulary is the 256 byte-level characters (ids = bytes), so that the
    ids show the normalized text; ByteLevel(add_prefix_space) after a split shows where it cut."""
    if model is None:
        model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                 "vocab": {BYTE_CHARS[b]: b for b in range(256)}, "merges": []}
    if pre is None:
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    doc = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [dict(id=i + 256, single_word=False, lstrip=False, rstrip=False,
                                 normalized=False, special=True) | a for i, a in enumerate(added)],
           "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post,
           "decoder": decoder if decoder is not None else BYTELEVEL_DECODER, "model": model}
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(doc, f)
    return d, Tokenizer.from_file(os.path.join(d, "tokenizer.json"))


def check(d, tok, text, what, decode=True):
    path = write("synthetic.txt", text)
    got, _ = lowbit_ids(d, path)
    ref = tok.encode(text).ids
    same_ids(got, ref, tok, what)
    if decode:
        out = run(d, "-f", path, "--roundtrip").stdout.decode("utf-8")
        same_text(out, tok.decode(ref), f"{what} (decode)")
        out = run(d, "-f", path, "--roundtrip", "--stream").stdout.decode("utf-8")
        same_text(out, tok.decode(ref), f"{what} (streamed decode)")


def normalization_text():
    """Characters with decompositions or combining classes (Python's tables, plus the ranges where
    lowbit patches utf8proc), samples of the rest, and jamo / mark sequences."""
    cps = [c for c in range(0x30000) if not 0xD800 <= c <= 0xDFFF and
           (unicodedata.decomposition(chr(c)) or unicodedata.combining(chr(c)) or c % 97 == 0)]
    cps += list(range(0x1AB0, 0x1B00)) + list(range(0x10D00, 0x11000)) + list(range(0x11900, 0x11960)) + \
        list(range(0x1E000, 0x1E100)) + list(range(0x1E4D0, 0x1E500)) + list(range(0x107A0, 0x107C0)) + \
        list(range(0x1FBF0, 0x1FC00)) + [0x32FF, 0xA7F2, 0xAB69, 0x898, 0x8CA]
    out = [f"{chr(c)} a{chr(c)}\u0301 e\u0301{chr(c)}\u0316 \u0316{chr(c)}\n" for c in sorted(set(cps))]
    out.append("\u1100\u1161\u11a8 \u1100\u1161 \uac00\u11a8 \u11a8\u1100 \U00011935\U00011930 \u0b47\u0b3e\n")
    return "".join(out)


def test_synthetic_normalizers():
    text = normalization_text() + read_text(TEXTS["unicode-torture.txt"])
    for form in ["NFC", "NFD", "NFKC", "NFKD"]:
        d, tok = synthetic(f"norm-{form}", normalizer={"type": form})
        check(d, tok, text, f"normalizer {form}", decode=False)
    seq = {"type": "Sequence", "normalizers": [
        {"type": "Strip", "strip_left": True, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    d, tok = synthetic("norm-seq", normalizer=seq)
    check(d, tok, " \u3000 lead  and\t\ttrail \u2003\n x y\u00a0z\u180e \n", "Strip/Replace/Prepend")


def test_synthetic_splits():
    pat = {"Regex": "\\s+|[\\p{N}\\p{L}]+|'(?i:s|ll)"}
    text = read_text(TEXTS["unicode-torture.txt"]) + "  a1  b's C'LL\u180e\u2028x  "
    for behavior in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
        for invert in [False, True]:
            pre = {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": pat, "behavior": behavior, "invert": invert},
                {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": False}]}
            d, tok = synthetic(f"split-{behavior}-{invert}", pre=pre)
            check(d, tok, text, f"Split {behavior} invert={invert}", decode=False)
    # Oniguruma (Ruby syntax) specifics: line anchors, (?m) = dot matches newline, \\h = hex digit
    for i, rx in enumerate(["^.", ".$", "(?m:a.)", "(?im)A.", "\\h+", "\\H", "[\\h_]+", "\\d+", "\\s\\S",
                            "[^\\S\\n]+", "\\p{L}\\P{N}", "[\\p{N}\\s]+", "\\pL"]):
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": rx}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": False}]}
        d, tok = synthetic(f"regex-{i}", pre=pre)
        check(d, tok, "ab\ncd\nb1f\u0663 x_x x\u00e9\u0301 a\nA\nAB\u180e \u00a0\n\u2028x\n", f"regex {rx!r}",
              decode=False)
    pre = {"type": "Split", "pattern": {"String": "ab"}, "behavior": "Isolated", "invert": False}
    pre = {"type": "Sequence", "pretokenizers": [pre, {"type": "ByteLevel", "add_prefix_space": True,
                                                       "trim_offsets": False, "use_regex": False}]}
    d, tok = synthetic("split-string", pre=pre)
    check(d, tok, "abab xaby aab ab", "Split on a string")
    # ByteLevel with its own GPT-2 regex and a prefix space
    pre = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    d, tok = synthetic("bytelevel-regex", pre=pre)
    check(d, tok, read_text(TEXTS["unicode-torture.txt"]), "ByteLevel(use_regex)")


def test_synthetic_metaspace():
    text = "Hello  world <s> again\u00a0x  <s>y\n end "
    vocab = {"<unk>": 0, "<s>": 1, "\u2581": 2} | {f"<0x{b:02X}>": 3 + b for b in range(256)}
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "vocab": vocab, "merges": []}
    for scheme in ["always", "first", "never"]:
        for split in [True, False]:
            pre = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": split}
            dec = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace",
                   "replacement": "\u2581", "prepend_scheme": scheme, "split": split}]}
            d, tok = synthetic(f"metaspace-{scheme}-{split}", pre=pre, model=model, decoder=dec,
                               added=[{"content": "<s>", "special": True}])
            check(d, tok, text, f"Metaspace {scheme} split={split}")
            check(d, tok, "x", f"Metaspace {scheme} split={split}, short")


def test_synthetic_added_tokens():
    added = [{"content": "<sp>", "special": True}, {"content": "[L]", "special": False, "lstrip": True},
             {"content": "[R]", "special": False, "rstrip": True},
             {"content": "[B]", "special": True, "lstrip": True, "rstrip": True},
             {"content": "NORM", "special": False, "normalized": True},
             {"content": "ab", "special": False}, {"content": "abc", "special": False}]
    norm = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Prepend", "prepend": "_"}]}
    d, tok = synthetic("added", normalizer=norm, added=added)
    text = "x <sp>y  [L] z [R]  w \t[B]\n v ＮＯＲＭ NORM abcab a b <sp><sp> [L][R] abab"
    check(d, tok, text, "added tokens (lstrip/rstrip/normalized)")
    path = write("synthetic.txt", text)
    got, _ = lowbit_ids(d, path, "--split-special")
    tok.encode_special_tokens = True
    same_ids(got, tok.encode(text).ids, tok, "added tokens --split-special")


def test_synthetic_decoders():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581": 3, "\u2581a": 4, "b": 5, "c": 6, " ": 7} | \
        {f"<0x{b:02X}>": 8 + b for b in range(256)} | {"a": 264}
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "vocab": vocab,
             "merges": ["\u2581 a"]}
    decoders = {
        "strip-both": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 2, "stop": 1}]},
        "strip-per-token": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "regex-replace": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"Regex": "\u2581+"}, "content": "_"}, {"type": "ByteFallback"}]},
    }
    post = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                                           "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}
    norm = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    text = "  a a\u00e9\u4e2d bc  \n\xff a  "
    for name, dec in decoders.items():
        d, tok = synthetic(f"dec-{name}", normalizer=norm, model=model, decoder=dec, post=post,
                           added=[{"content": "<s>", "special": True}, {"content": "</s>", "special": True}])
        check(d, tok, text, f"decoder {name}")
        if name == "regex-replace":  # tokenizers' Strip panics when it would cut more than the token
            check(d, tok, " ", f"decoder {name}, one space")
        ids = [4, 8 + 0xE4, 8 + 0xB8, 1, 8 + 0xAD, 8 + 0xE4, 8 + 0xB8, 8 + 0xAD, 3, 3, 8 + 0xFF, 7, 7, 2]
        for keep in [False, True]:
            flags = ["--keep-special"] if keep else []
            for stream in [[], ["--stream"]]:
                got = run(d, "-p", " ".join(map(str, ids)), "--decode", *flags, *stream).stdout.decode()
                same_text(got, tok.decode(ids, skip_special_tokens=not keep), f"decoder {name} {flags} {stream}")


def test_cli_usage():
    d = TOKENIZERS["pocket"]
    for args, code, needle in [([d], 2, "-p TEXT or -f FILE"), ([d, "-p", "x", "--idz"], 2, "unknown option"),
                               ([d, "-p", "x", "--ids", "--json"], 2, "exclude"),
                               (["/nonexistent", "-p", "x"], 1, "/nonexistent/tokenizer.json"),
                               ([d, "-f", "/nonexistent.txt"], 1, "/nonexistent.txt"),
                               ([d, "-p", "1 x", "--decode"], 2, "not a list of integer ids"),
                               ([d, "-p", "99999999", "--decode"], 1, "99999999")]:
        p = subprocess.run([BIN, "tokenize", *args], capture_output=True, text=True)
        assert p.returncode == code and needle in p.stderr, (args, p.returncode, p.stderr)
    assert subprocess.run([BIN, "tokenize", "--help"], capture_output=True).returncode == 0
    out = json.loads(run(d, "-p", "Hello world", "--json").stdout)
    assert out == {"ids": [1, 22557, 1526], "pieces": ["<s>", "\u2581Hello", "\u2581world"], "count": 3}, out
    table = run(d, "-p", "a\tb\n", "--no-special").stdout.decode()
    assert "\t<0x09>\n" in table and table.endswith(" tokens\n"), table
    assert run(d, "-f", "-", "--ids", stdin=b"Hello world").stdout == b"1 22557 1526\n"


if __name__ == "__main__":
    import sys
    ALL = [test_ids_match_reference, test_special_tokens_by_default, test_special_token_text,
               test_decode_matches_reference, test_roundtrip_gives_the_text_back, test_every_code_point,
               test_synthetic_normalizers, test_synthetic_splits, test_synthetic_metaspace,
               test_synthetic_added_tokens, test_synthetic_decoders, test_cli_usage]
    run_tests([t for t in ALL if not sys.argv[1:] or t.__name__ in sys.argv[1:]])
