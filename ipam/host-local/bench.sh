#!/usr/bin/env bash
# Whole-process latency of host-local, weft's against the reference, in a clean environment
# (env -i: no NODE_OPTIONS, no NODE_EXTRA_CA_CERTS). Needs hyperfine and bin/host-local (make).
#   ipam/host-local/bench.sh [reservations-already-present=0] [runs=100]
set -euo pipefail
cd "$(dirname "$0")/../.."
WEFT="$PWD/bin/host-local"
REFERENCE=/usr/lib/cni/host-local
N="${1:-0}"
RUNS="${2:-100}"
work="$(mktemp -d /tmp/weft-bench-XXXXXX)"
trap 'rm -rf "$work"' EXIT

for impl in weft reference; do
  printf '{"cniVersion":"1.1.0","name":"bench","type":"bridge","ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.250.0.0/16"}]]}}' \
    "$work/$impl" >"$work/$impl.json"
  # The reference speaks 1.0.0 at most; the result is the same.
  [ "$impl" = reference ] && sed -i 's/"1.1.0"/"1.0.0"/' "$work/$impl.json"
done
# N reservations of other containers, made by the reference and copied, so both stores start equal.
for i in $(seq 1 "$N"); do
  env -i PATH=/usr/bin:/bin CNI_COMMAND=ADD CNI_CONTAINERID="other-$i" CNI_NETNS=/x CNI_IFNAME=eth0 CNI_PATH=/x \
    "$REFERENCE" <"$work/reference.json" >/dev/null
done
if [ "$N" -gt 0 ]; then cp -a "$work/reference/bench" "$work/weft/"; else mkdir -p "$work/weft" "$work/reference"; fi

# One small script per call, so hyperfine runs it without a shell of its own (-N).
for impl in weft reference; do
  bin="$WEFT"; [ "$impl" = reference ] && bin="$REFERENCE"
  for verb in ADD DEL; do
    printf '#!/bin/sh\nexec env -i PATH=/usr/bin:/bin CNI_COMMAND=%s CNI_CONTAINERID=bench CNI_NETNS=/x CNI_IFNAME=eth0 CNI_PATH=/x %s <%s >/dev/null\n' \
      "$verb" "$bin" "$work/$impl.json" >"$work/$impl-$verb"
  done
  # Drops the benchmark container's reservation, whoever made it, so the next ADD is not a duplicate.
  printf '#!/bin/sh\ngrep -l "^bench" %s/* 2>/dev/null | xargs -r rm -f\n' "$work/$impl/bench" >"$work/$impl-release"
  printf '#!/bin/sh\n%s && exec %s\n' "$work/$impl-release" "$work/$impl-ADD" >"$work/$impl-readd"
  chmod +x "$work/$impl"-*
done

args=(-N --warmup 10 --runs "$RUNS" --export-json "$work/results.json")
for impl in weft reference; do args+=(--prepare "$work/$impl-release" -n "$impl ADD (N=$N)" "$work/$impl-ADD"); done
# Each DEL releases what its prepare step's ADD reserved.
for impl in weft reference; do args+=(--prepare "$work/$impl-readd" -n "$impl DEL (N=$N)" "$work/$impl-DEL"); done
hyperfine "${args[@]}" >/dev/null
python3 - "$work/results.json" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    t = sorted(r["times"]); n = len(t)
    print("%-26s median %6.2f ms   p10 %6.2f   p90 %6.2f   (%d runs)" % (r["command"], r["median"] * 1000, t[n // 10] * 1000, t[n * 9 // 10] * 1000, n))
EOF
