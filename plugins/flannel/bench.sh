#!/usr/bin/env bash
# ADD and DEL latency of a pod through flannel's chain, whole-process medians (hyperfine), in a
# clean environment (env -i: PATH and the CNI_ variables only). Everything happens in namespaces and
# a temp directory this script makes and removes.
#   plugins/flannel/bench.sh [runs]
# Chains measured:
#   reference      Debian's bridge -> host-local, given flannel's rendered delegate config (no flannel)
#   flannel        weft flannel -> reference bridge -> host-local
#   nested-inproc  weft flannel -> weft flannel (in-process) -> reference bridge -> host-local
#   nested-exec    weft flannel -> weft flannel (executed)   -> reference bridge -> host-local
# The nested chains stand in for flannel -> weft bridge until weft's bridge exists: their
# difference is what one in-process delegation saves.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-30}
[ -x bin/flannel ] || node scripts/build.mjs

tag="wft-bench-$$"
node_ns="$tag-node"
pod_ns="$tag-pod"
work=$(mktemp -d /tmp/weft-flannel-bench.XXXXXX)
cleanup() {
  ip netns delete "$pod_ns" 2>/dev/null || true
  ip netns delete "$node_ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$node_ns"
ip -n "$node_ns" link set lo up
ip netns add "$pod_ns"

mkdir -p "$work/inproc" "$work/exec"
cp bin/flannel "$work/inproc/flannel"
# The same bundle under another version on its banner line: executed, never run in-process.
sed '2s/^\(\/\/ weft [^ ]*\)/\1-exec/' bin/flannel > "$work/exec/flannel"
chmod 755 "$work/exec/flannel"

cat > "$work/subnet.env" <<ENV
FLANNEL_NETWORK=10.244.0.0/16
FLANNEL_SUBNET=10.244.1.1/24
FLANNEL_MTU=1450
FLANNEL_IPMASQ=true
ENV
cat > "$work/inner.env" <<ENV
FLANNEL_NETWORK=10.96.0.0/12
FLANNEL_SUBNET=10.244.1.1/24
FLANNEL_MTU=1450
FLANNEL_IPMASQ=true
ENV

base='"cniVersion":"1.0.0","name":"cbr0","type":"flannel","subnetFile":"'$work'/subnet.env","dataDir":"'$work'/flannel","ipam":{"dataDir":"'$work'/networks"}'
echo "{$base,\"delegate\":{\"hairpinMode\":true,\"isDefaultGateway\":true}}" > "$work/flannel.conf"
echo "{$base,\"delegate\":{\"type\":\"flannel\",\"subnetFile\":\"$work/inner.env\",\"dataDir\":\"$work/inner\",\"delegate\":{\"hairpinMode\":true}}}" > "$work/nested.conf"
printf '%s' "{\"cniVersion\":\"1.0.0\",\"hairpinMode\":true,\"ipMasq\":false,\"ipam\":{\"dataDir\":\"$work/networks\",\"ranges\":[[{\"subnet\":\"10.244.1.0/24\"}]],\"routes\":[{\"dst\":\"10.244.0.0/16\"}],\"type\":\"host-local\"},\"isDefaultGateway\":true,\"isGateway\":true,\"mtu\":1450,\"name\":\"cbr0\",\"type\":\"bridge\"}" > "$work/bridge.conf"

# cmd VERB PATH-DIR EXECUTABLE CONF
cmd() {
  echo "env -i PATH=/usr/bin:/bin CNI_COMMAND=$1 CNI_CONTAINERID=bench CNI_NETNS=/run/netns/$pod_ns CNI_IFNAME=eth0 CNI_PATH=$2:/usr/lib/cni $3 < $4 > /dev/null"
}

bench() { # name path-dir executable conf
  local add del
  add=$(cmd ADD "$2" "$3" "$4")
  del=$(cmd DEL "$2" "$3" "$4")
  # Leave no pod from the previous chain.
  ip netns exec "$node_ns" sh -c "$del" || true
  ip netns exec "$node_ns" hyperfine --style basic --runs "$runs" --warmup 3 \
    --export-json "$work/$1.json" \
    --prepare "$del" -n "$1 ADD" "$add" \
    --prepare "$del; $add" -n "$1 DEL" "$del" >/dev/null
  ip netns exec "$node_ns" sh -c "$del"
  node -e '
    const r = require(process.argv[1]).results;
    for (const x of r) console.log(`${x.command.padEnd(22)} median ${(x.median*1000).toFixed(1).padStart(6)} ms   min ${(x.min*1000).toFixed(1).padStart(6)}   max ${(x.max*1000).toFixed(1).padStart(6)}`);
  ' "$work/$1.json"
}

echo "VERSION floor (bin/flannel, clean env):"
hyperfine --style basic --runs "$runs" --warmup 3 -n "flannel VERSION" \
  "env -i PATH=/usr/bin:/bin CNI_COMMAND=VERSION $PWD/bin/flannel < /dev/null > /dev/null" \
  -n "reference bridge VERSION" "env -i PATH=/usr/bin:/bin CNI_COMMAND=VERSION /usr/lib/cni/bridge < /dev/null > /dev/null" |
  grep -E '^(Benchmark|  Time)'
bench reference "$work/inproc" /usr/lib/cni/bridge "$work/bridge.conf"
bench flannel "$work/inproc" "$PWD/bin/flannel" "$work/flannel.conf"
bench nested-inproc "$work/inproc" "$PWD/bin/flannel" "$work/nested.conf"
bench nested-exec "$work/exec" "$PWD/bin/flannel" "$work/nested.conf"
