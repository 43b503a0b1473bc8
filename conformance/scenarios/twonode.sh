# Two nodes: node namespaces joined by a veth underlay (MTU 1500), programmed the
# way flanneld programs them (vxlan: flannel.1 VNI 1, port 8472, nolearning, plus the route,
# neighbour and fdb entry per remote subnet; host-gw: a route via the other node's underlay
# address), pods added through the driver on each node, traffic pod to pod across the nodes.

scenarios_twonode() {
  run_scenario "$TARGET:two-node/vxlan" sc_two_node vxlan
  run_scenario "$TARGET:two-node/host-gw" sc_two_node host-gw
}

UNDERLAY_A=192.168.50.1
UNDERLAY_B=192.168.50.2

# flannel_vxlan <node> <underlay-ip> <subnet-index>: flanneld's own device.
flannel_vxlan() {
  nsexec "$1" ip link add flannel.1 type vxlan id 1 local "$2" dev eth0 dstport 8472 nolearning
  ip -n "$1" link set flannel.1 mtu 1450 up
  ip -n "$1" addr add "10.244.$3.0/32" dev flannel.1
}

# flannel_remote_vxlan <node> <remote-index> <remote-underlay-ip> <remote-vtep-mac>: what flanneld
# programs per remote lease.
flannel_remote_vxlan() {
  local node=$1 n=$2 underlay=$3 mac=$4
  ip -n "$node" route add "10.244.$n.0/24" via "10.244.$n.0" dev flannel.1 onlink
  ip -n "$node" neigh replace "10.244.$n.0" lladdr "$mac" dev flannel.1 nud permanent
  nsexec "$node" bridge fdb append "$mac" dev flannel.1 dst "$underlay"
}

# two_node_pod <node> <index> <mtu> <pod>: ADD a pod on node <index> (10.244.<index>.0/24).
two_node_pod() {
  local node=$1 n=$2 mtu=$3 pod=$4
  NODE_DIR="$SCN_DIR/node$n"
  mkdir -p "$NODE_DIR"
  if [ "$TARGET" = weft ]; then
    subnet_env "$NODE_DIR/subnet.env" "10.244.$n.1/24" "$mtu"
    conflist cbr0 1.0.0 "$(flannel_plugins "$NODE_DIR/subnet.env")"
  else
    conflist cbr0 1.0.0 "[$(bridge_plugin "10.244.$n.0/24" "$mtu")]"
  fi
  drv_ok "$node" add cbr0 "c$n" "/run/netns/$pod" eth0
  jq_true "$SCN_DIR/out" ".ips[0].address == \"10.244.$n.2/24\"" "pod on node $n did not get 10.244.$n.2"
  [ "$(ip -n "$pod" -j link show eth0 | jq '.[0].mtu')" = "$mtu" ] || fail "pod on node $n: eth0 MTU is not $mtu"
  unset NODE_DIR
}

two_node_del() { # <node> <index> <pod>
  NODE_DIR="$SCN_DIR/node$2" drv_ok "$1" del cbr0 "c$2" "/run/netns/$3" eth0
}

tx_packets() { ip -n "$1" -s -j link show "$2" | jq '.[0].stats64.tx.packets'; }

sc_two_node() {
  local mode=$1 mtu a b pa pb tx0 tx1
  if [ "$TARGET" = weft ]; then need flannel bridge host-local; else need bridge host-local; fi
  a=$(netns na) b=$(netns nb)
  pa=$(netns pa) pb=$(netns pb)
  ip link add eth0 netns "$a" type veth peer name eth0 netns "$b"
  ip -n "$a" addr add "$UNDERLAY_A/24" dev eth0
  ip -n "$b" addr add "$UNDERLAY_B/24" dev eth0
  for n in "$a" "$b"; do
    ip -n "$n" link set eth0 mtu 1500 up
    nsexec "$n" sysctl -qw net.ipv4.ip_forward=1
  done
  if [ "$mode" = vxlan ]; then
    mtu=1450
    flannel_vxlan "$a" "$UNDERLAY_A" 1
    flannel_vxlan "$b" "$UNDERLAY_B" 2
    flannel_remote_vxlan "$a" 2 "$UNDERLAY_B" "$(ip -n "$b" -j link show flannel.1 | jq -r '.[0].address')"
    flannel_remote_vxlan "$b" 1 "$UNDERLAY_A" "$(ip -n "$a" -j link show flannel.1 | jq -r '.[0].address')"
  else
    mtu=1500
    ip -n "$a" route add 10.244.2.0/24 via "$UNDERLAY_B" dev eth0
    ip -n "$b" route add 10.244.1.0/24 via "$UNDERLAY_A" dev eth0
  fi
  two_node_pod "$a" 1 "$mtu" "$pa"
  two_node_pod "$b" 2 "$mtu" "$pb"

  nsexec "$pa" "$PINGDF" 10.244.2.2 84 >/dev/null || fail "pod on node 1 cannot ping the pod on node 2"
  nsexec "$pb" "$PINGDF" 10.244.1.2 84 >/dev/null || fail "pod on node 2 cannot ping the pod on node 1"
  [ "$mode" = vxlan ] && tx0=$(tx_packets "$a" flannel.1)
  nsexec "$pa" "$PINGDF" 10.244.2.2 "$mtu" >/dev/null 2>"$SCN_DIR/ping.err" ||
    fail "a $mtu-byte DF packet does not cross from node 1 to node 2: $(cat "$SCN_DIR/ping.err")"
  nsexec "$pb" "$PINGDF" 10.244.1.2 "$mtu" >/dev/null 2>"$SCN_DIR/ping.err" ||
    fail "a $mtu-byte DF packet does not cross from node 2 to node 1: $(cat "$SCN_DIR/ping.err")"
  if [ "$mode" = vxlan ]; then
    tx1=$(tx_packets "$a" flannel.1)
    [ "$tx1" -gt "$tx0" ] || fail "the pod traffic did not go through flannel.1"
  fi
  if nsexec "$pa" "$PINGDF" 10.244.2.2 $((mtu + 1)) 1 >/dev/null 2>&1; then
    fail "a $((mtu + 1))-byte DF packet was not refused"
  fi

  two_node_del "$a" 1 "$pa"
  two_node_del "$b" 2 "$pb"
  no_veth "$a" || fail "pod veth left on node 1 after DEL"
  no_veth "$b" || fail "pod veth left on node 2 after DEL"
}
