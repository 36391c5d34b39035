#!/bin/bash
# Packs what bench/ecosystem/device.sh and bench/cuda/device.sh need on the GPU machine into folders
# that git ignores (.gitignore: /.xfer/ /.deb/ /.whl/), each carried by one `run` call (64 MiB per call):
#   .xfer/a  first half of pocket-llama's model.safetensors (xz) -- call 1, with .deb and .whl
#   .xfer/b  second half + config, tokenizer, generation files, WikiText, pocket-valid and the
#            calibration text -- call 2
#   .deb     Debian 12 packages to build lowbit there: jansson, pcre2, utf8proc, openblas (apt-get download)
#   .whl     bitsandbytes (CUDA 13 + CPU libraries only), compressed-tensors, hqq (built from its sdist
#            with DISABLE_CUDA=1), pydantic(+core, annotated-types, typing-inspection, typing-extensions),
#            loguru, termcolor: what the GPU image lacks (its torch and transformers are kept). This
#            script does not make .whl (hqq's sdist needs a build); bench/cuda needs only .deb and .xfer.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${LOWBIT_SHARED:-../shared}
M=$SHARED/models/pocket-llama-48m
rm -rf .xfer/a .xfer/b && mkdir -p .xfer/a .xfer/b
xz -T2 -6 -c "$M/model.safetensors" > .xfer/model.xz
size=$(stat -c %s .xfer/model.xz)
split -b $(( (size + 1) / 2 )) -d .xfer/model.xz .xfer/part
mv .xfer/part00 .xfer/a/ && mv .xfer/part01 .xfer/b/ && rm .xfer/model.xz
cp "$M"/config.json "$M"/generation_config.json "$M"/tokenizer.json "$M"/tokenizer_config.json .xfer/b/
cp "$SHARED/data/wikitext-2-raw/wiki.test.raw" "$SHARED/data/pocket-valid.txt" .xfer/b/
cp "$SHARED/data/calibration/groups_merged.txt" .xfer/b/
rm -rf .deb && mkdir -p .deb
(cd .deb && apt-get download -q libjansson4 libjansson-dev libpcre2-8-0 libpcre2-dev libutf8proc2 \
  libutf8proc-dev libopenblas0-pthread libopenblas-pthread-dev libopenblas-dev libgfortran5 2>&1 |
  grep -v "unsandboxed as root")
du -sh .xfer/a .xfer/b .deb
