# containerd end to end: Debian's containerd 1.6 and runc, started by the suite in a
# node network namespace and a private mount namespace of its own, with overlays on /etc, /opt and
# /var/lib so that its CNI paths (/etc/cni/net.d, /opt/cni/bin, /usr/lib/cni, /var/lib/cni) are
# the suite's and the host's are never touched; a busybox image built here as an OCI archive;
# `ctr run --cni --rm` attached in the background, then killed, which makes ctr send DEL.

scenarios_containerd() {
  run_scenario "$TARGET:containerd/run-cni" sc_containerd
}

CTR_IMAGE=docker.io/weft/busybox:conformance

# oci_image <archive>: busybox-static as a one-layer OCI image archive (reproducible).
oci_image() {
  local out=$1 d root layer config manifest sha size csha csize msha msize
  d=$(mktemp -d "$WORK/image.XXXXXX")
  root=$d/rootfs
  mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$d/oci/blobs/sha256"
  cp "$(command -v busybox)" "$root/bin/busybox"
  for app in sh ip sleep cat; do ln -s busybox "$root/bin/$app"; done
  echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$d/layer.tar" .
  sha=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
  size=$(stat -c %s "$d/layer.tar")
  mv "$d/layer.tar" "$d/oci/blobs/sha256/$sha"
  config=$(jq -nc --arg sha "$sha" '{architecture:"amd64",os:"linux",
    config:{Cmd:["/bin/sh"],Env:["PATH=/bin"]},rootfs:{type:"layers",diff_ids:["sha256:\($sha)"]}}')
  csha=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
  csize=${#config}
  printf '%s' "$config" >"$d/oci/blobs/sha256/$csha"
  manifest=$(jq -nc --arg c "$csha" --argjson cs "$csize" --arg l "$sha" --argjson ls "$size" '{schemaVersion:2,
    mediaType:"application/vnd.oci.image.manifest.v1+json",
    config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:"sha256:\($c)",size:$cs},
    layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar",digest:"sha256:\($l)",size:$ls}]}')
  msha=$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
  msize=${#manifest}
  printf '%s' "$manifest" >"$d/oci/blobs/sha256/$msha"
  jq -nc --arg m "$msha" --argjson ms "$msize" --arg name "$CTR_IMAGE" '{schemaVersion:2,manifests:[{
    mediaType:"application/vnd.oci.image.manifest.v1+json",digest:"sha256:\($m)",size:$ms,
    platform:{architecture:"amd64",os:"linux"},
    annotations:{"io.containerd.image.name":$name,"org.opencontainers.image.ref.name":"conformance"}}]}' >"$d/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$d/oci/oci-layout"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$d/oci" -cf "$out.tmp" . && mv "$out.tmp" "$out"
  rm -rf "$d"
}

# ctrx <args...>: ctr against the suite's containerd, inside its mount and network namespaces (ctr
# 1.6 runs the CNI plugins itself, from /etc/cni/net.d and /opt/cni/bin).
ctrx() {
  nsenter -t "$(cat "$SCN_DIR/containerd.pid")" -m -n ctr -a "$CTR_SOCK" -n weft "$@"
}

# Processes this scenario's containerd started (shims), found by its socket path, ended by id.
ctr_cleanup() {
  local pid
  [ -f "$SCN_DIR/containerd.pid" ] || return 0
  for c in $(ctrx tasks ls -q 2>/dev/null); do ctrx tasks kill -s KILL "$c" 2>/dev/null || true; done
  sleep 0.3
  for c in $(ctrx containers ls -q 2>/dev/null); do ctrx tasks rm -f "$c" 2>/dev/null; ctrx containers rm "$c" 2>/dev/null || true; done
  kill "$(cat "$SCN_DIR/containerd.pid")" 2>/dev/null || true
  for pid in $(grep -l -s -F "$CTR_SOCK" /proc/[0-9]*/cmdline | cut -d/ -f3); do
    kill "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for mp in $(grep -F "$SCN_DIR/c/" /proc/mounts | awk '{print $2}' | sort -r); do umount -l "$mp" 2>/dev/null || true; done
}

sc_containerd() {
  local node plugins want_type ctr_pid i veth
  # runc keeps its state under the host's /run/containerd/runc/<namespace>/<id>, whatever
  # containerd's state dir: the id carries the run's prefix so that two runs do not meet there.
  local id=${PFX}c1
  for t in containerd ctr runc nsenter unshare busybox; do
    command -v "$t" >/dev/null || fail "$t is not installed"
  done
  # Which plugins the container gets: weft's flannel chain when weft's flannel, bridge and
  # host-local work, the reference bridge chain otherwise (CONFORMANCE_CONTAINERD=weft|ref forces).
  plugins=${CONFORMANCE_CONTAINERD:-$TARGET}
  if [ "$plugins" = weft ]; then need flannel bridge host-local portmap; fi

  [ -s "$WORK/busybox-oci.tar" ] || oci_image "$WORK/busybox-oci.tar"
  node=$(netns node)
  # The socket and the runtime state (which holds the shims' sockets) in the run's short directory.
  CTR_STATE=$(mktemp -d "$RUN_DIR/ctr.XXXX")
  CTR_SOCK=$CTR_STATE/sock
  defer "rm -rf $CTR_STATE"
  mkdir -p "$SCN_DIR/c/root" "$SCN_DIR/c/ovl" "$SCN_DIR/bin" "$SCN_DIR/empty" "$SCN_DIR/ipam"
  if [ "$plugins" = weft ]; then
    for p in $WEFT_PROGRAMS; do cp "$WEFT_BIN/$p" "$SCN_DIR/bin/"; done
    subnet_env "$SCN_DIR/subnet.env" 10.244.1.1/24 1450
    jq --argjson p "$(flannel_plugins "$SCN_DIR/subnet.env")" '.plugins = $p' "$ROOT/conf/10-flannel.conflist" >"$SCN_DIR/10-flannel.conflist"
  else
    for p in $SHARED_PLUGINS; do cp "$REF_BIN/$p" "$SCN_DIR/bin/"; done
    jq -n --argjson b "$(bridge_plugin 10.244.1.0/24)" \
      '{cniVersion:"1.0.0",name:"cbr0",plugins:[$b,{type:"portmap",capabilities:{portMappings:true}}]}' >"$SCN_DIR/10-flannel.conflist"
  fi
  cat >"$SCN_DIR/c/config.toml" <<EOF
version = 2
root = "$SCN_DIR/c/root"
state = "$CTR_STATE/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTR_SOCK"
EOF
  # Inside the node netns and a private mount ns: overlays (upper layers on a tmpfs of ours) on
  # /etc, /opt and /var/lib, then the suite's conflist and plugins in the paths ctr reads.
  cat >"$SCN_DIR/c/start.sh" <<EOF
set -e
mount -t tmpfs weft-conformance "$SCN_DIR/c/ovl"
for d in etc opt var/lib; do
  u="$SCN_DIR/c/ovl/\${d//\//_}"
  mkdir -p "\$u/upper" "\$u/work"
  mount -t overlay overlay -o "lowerdir=/\$d,upperdir=\$u/upper,workdir=\$u/work" "/\$d"
done
mkdir -p /etc/cni/net.d /opt/cni/bin /var/lib/cni
cp "$SCN_DIR/10-flannel.conflist" /etc/cni/net.d/
mount --bind "$SCN_DIR/bin" /opt/cni/bin
mount --bind "$SCN_DIR/empty" /usr/lib/cni
exec containerd --config "$SCN_DIR/c/config.toml"
EOF
  # nsenter, not `ip netns exec`: the latter remounts /sys and hides the cgroup mounts runc needs.
  nsenter --net="/run/netns/$node" unshare --mount --propagation private bash "$SCN_DIR/c/start.sh" >"$SCN_DIR/containerd.log" 2>&1 &
  echo $! >"$SCN_DIR/containerd.pid"
  defer ctr_cleanup
  eventually 20 test -S "$CTR_SOCK" || fail "containerd did not start: $(tail -3 "$SCN_DIR/containerd.log")"
  eventually 10 ctrx version >/dev/null || fail "containerd does not answer: $(tail -3 "$SCN_DIR/containerd.log")"
  ctrx images import "$WORK/busybox-oci.tar" >&2 || fail "ctr images import failed"
  ctrx images ls -q | has -x "$CTR_IMAGE" || fail "imported image $CTR_IMAGE not listed: $(ctrx images ls -q)"

  # Attached, in the background: killing ctr makes it tear the task down and send DEL.
  nsenter -t "$(cat "$SCN_DIR/containerd.pid")" -m -n ctr -a "$CTR_SOCK" -n weft \
    run --cni --rm "$CTR_IMAGE" "$id" /bin/sh -c \
    'trap "exit 0" TERM; ip -o -4 addr show eth0; ip -o link show eth0; ip route; echo READY; sleep 300 & wait' \
    >"$SCN_DIR/ctr.out" 2>"$SCN_DIR/ctr.err" &
  ctr_pid=$!
  defer "kill $ctr_pid 2>/dev/null"
  eventually 30 grep -q READY "$SCN_DIR/ctr.out" || fail "container did not start: $(head -c 300 "$SCN_DIR/ctr.err")"
  cat "$SCN_DIR/ctr.out" >&2
  grep -q 'inet 10.244.1.2/24' "$SCN_DIR/ctr.out" || fail "eth0 in the container lacks 10.244.1.2/24: $(cat "$SCN_DIR/ctr.out")"
  grep -Eq 'eth0[:@].* mtu 1450 ' "$SCN_DIR/ctr.out" || fail "eth0 in the container does not have MTU 1450"
  grep -q '^default via 10.244.1.1 dev eth0' "$SCN_DIR/ctr.out" || fail "no default route via 10.244.1.1 in the container"
  [ -e "$SCN_DIR/ipam/cbr0/10.244.1.2" ] || fail "no host-local reservation for 10.244.1.2"
  veth=$(ip -n "$node" -j link show master cni0 type veth | jq -r '.[0].ifname // empty')
  [ -n "$veth" ] || fail "no veth on cni0 in the node namespace"
  [ "$plugins" != weft ] || [ -f "$SCN_DIR/flannel/weft-$id" ] || fail "flannel saved no config for weft-$id (ctr's <namespace>-<id>)"

  kill "$ctr_pid"
  wait "$ctr_pid" 2>/dev/null || true
  reservation_gone() { [ ! -e "$SCN_DIR/ipam/cbr0/10.244.1.2" ]; }
  veth_gone() { ! ip -n "$node" link show "$veth" >/dev/null 2>&1; }
  eventually 20 reservation_gone || fail "10.244.1.2 still reserved after the container was removed (no DEL?)"
  eventually 20 veth_gone || fail "host veth $veth still present after the container was removed"
  [ -z "$(ctrx containers ls -q)" ] || fail "container still listed after ctr --rm"
  [ "$plugins" != weft ] || [ ! -e "$SCN_DIR/flannel/weft-$id" ] || fail "flannel's saved config left after DEL"
}
