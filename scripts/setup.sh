#!/usr/bin/env bash
# Installs what lowbit needs to build and test, when it is missing: Debian packages (apt-get) and
# the Python reference packages the tests compare with (pip). Idempotent and quick when all is there.
#   scripts/setup.sh          build + test dependencies
#   scripts/setup.sh --fuzz   also clang's libFuzzer runtime
set -euo pipefail

debs=(cmake make gcc pkg-config libjansson-dev libpcre2-dev libutf8proc-dev libopenblas-dev)
[[ "${1:-}" == "--fuzz" ]] && debs+=(clang libclang-rt-14-dev)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The references the tests compare against, pinned so results do not drift.
pyreq=("numpy==2.4.6" "ml_dtypes==0.6.0" "safetensors==0.8.0" "tokenizers==0.23.2")
if ! python3 - "${pyreq[@]}" <<'PY' 2>/dev/null
import importlib.metadata as m, sys
for req in sys.argv[1:]:
    name, version = req.split("==")
    assert m.version(name) == version
PY
then
  echo "setup: installing ${pyreq[*]}" >&2
  python3 -m pip install --quiet --disable-pip-version-check "${pyreq[@]}" ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${pyreq[@]}"
fi
