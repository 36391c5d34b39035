#!/usr/bin/env python3
"""Perplexity of a model in Transformers (fp32 on a GPU, TF32 off) under several window protocols, to
pin down which protocol a published number used and to give `lowbit perplexity` an exact reference.
Run on the GPU machine (torch, transformers and tokenizers installed):

  python3 bench/ppl_reference.py MODEL_DIR wiki.test.raw [--ctx 1024]

Protocols (ids = the whole file tokenized once; BOS where the tokenizer adds it):
  every-position  lowbit's: windows of ctx inputs, each position scored against the next token of
                  the text (the last against the next window's first)
  in-window       windows of ctx, the ctx-1 predictions inside each window (Transformers' loss)
  bos-per-window  BOS + ctx-1 text tokens per window
  no-bos          as in-window, text without BOS"""
import argparse
import math

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("text")
ap.add_argument("--ctx", type=int, default=1024)
a = ap.parse_args()
torch.backends.cuda.matmul.allow_tf32 = False
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).cuda().eval()
tok = Tokenizer.from_file(f"{a.model}/tokenizer.json")
text = open(a.text, "rb").read().decode("utf-8", "replace")
N = a.ctx


def score(name, windows):
    """windows: (input ids, [(position, target id)]) pairs; NLL summed in float64."""
    total, count = 0.0, 0
    for inp, targets in windows:
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([inp]).cuda()).logits[0].float(), -1)
        pos = torch.tensor([p for p, _ in targets]).cuda()
        tgt = torch.tensor([t for _, t in targets]).cuda()
        total += float(-lp[pos, tgt].double().sum())
        count += len(targets)
    print(f"{name:15s} ppl {math.exp(total / count):.4f}  ({count} tokens, {len(windows)} windows)")


ids = tok.encode(text).ids
score("every-position", [(ids[w * N:(w + 1) * N], [(i, ids[w * N + i + 1]) for i in range(N)])
                         for w in range((len(ids) - 1) // N)])
score("in-window", [(ids[w * N:(w + 1) * N], [(i, ids[w * N + i + 1]) for i in range(N - 1)])
                    for w in range(len(ids) // N)])
body = ids[1:] if ids and ids[0] == 1 else ids
score("bos-per-window", [([ids[0]] + body[w * (N - 1):(w + 1) * (N - 1)],
                          [(i, body[w * (N - 1) + i]) for i in range(N - 1)])
                         for w in range(len(body) // (N - 1))])
raw = tok.encode(text, add_special_tokens=False).ids
score("no-bos", [(raw[w * N:(w + 1) * N], [(i, raw[w * N + i + 1]) for i in range(N - 1)])
                 for w in range(len(raw) // N)])
