#!/usr/bin/env bash
# Write the generated sources of every zoo model on the cpu and hls targets to OUT/<target>/<model>/,
# so a refactor can show they are byte-identical (diff -r BEFORE AFTER) or explain each difference.
#   bash scripts/snapshot_sources.sh OUT [MAX_ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:?usage: snapshot_sources.sh OUT [MAX_ROWS]}")
ROWS=${2:-1000}
XREC=${XREC:-.venv/bin/xrec}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for model in $($XREC models | awk "{print \$1}"); do
  for target in cpu hls; do
    opts=()
    [ "$target" = cpu ] && opts=(-O isa=avx512)
    $XREC compile "$model" -t "$target" --max-rows "$ROWS" "${opts[@]}" -o "$tmp/$model.$target.xrec" >/dev/null
    mkdir -p "$OUT/$target/$model"
    cp -r "$tmp/$model.$target.xrec/src/." "$OUT/$target/$model/"
    echo "snapshot: $target/$model"
  done
done
