# Switching a node between weft and the Go plugins, both ways: a pod added by one implementation
# (bridge with ipMasq + host-local + portmap with a port mapping, through libcni) is deleted by the
# other, with the binaries swapped under the same libcni cache, as an operator's upgrade or rollback
# does. Each must end with DEL rc 0 and nothing of the pod left: no iptables or nftables rule, no
# reservation, no veth, no cache entry.
#
# The Go side is Debian's containernetworking-plugins (REF_BIN, 1.1.1: iptables only) and, for the
# nftables layouts, the newer Go plugins that scripts/setup unpacks into conformance/reference/
# (GO_NEW_BIN; v1.6+ add ipMasqBackend and portmap's backend). The Go flannel plugin is not packaged
# by Debian, so the conflist is what flannel renders for its delegate.

GO_NEW_BIN=${GO_NEW_BIN:-$ROOT/conformance/reference/bin}

scenarios_switch() {
  local from to backend
  for backend in auto nftables; do
    for from in weft go-debian go-new; do
      for to in weft go-debian go-new; do
        # One side is weft; both sides Go is the control for a known reference defect.
        [ "$from" = weft ] || [ "$to" = weft ] || [ "$from/$to/$backend" = go-new/go-new/nftables ] || continue
        [ "$from" != "$to" ] || [ "$from" != weft ] || continue
        # Debian's Go plugins predate nftables: they cannot remove what any nftables backend made.
        [ "$to/$backend" != go-debian/nftables ] || continue
        run_scenario "switch/$backend/$from-to-$to" sc_switch "$from" "$to" "$backend"
      done
    done
  done
}

switch_bin() {
  case $1 in
    weft) echo "$WEFT_BIN" ;;
    go-debian) echo "$REF_BIN" ;;
    go-new)
      [ -x "$GO_NEW_BIN/portmap" ] || fail "the newer Go plugins are not in $GO_NEW_BIN: run scripts/setup"
      echo "$GO_NEW_BIN"
      ;;
  esac
}

# The Go plugins v1.6+ tear the iptables masquerade down before the nftables one, and with
# Debian 12's iptables 1.8.9 the teardown of a chain that does not exist exits 2, which go-iptables
# takes for an error: their DEL of any pod masqueraded with nftables fails, their own pods included
# (the go-new-to-go-new control shows it). Everything else of the pod is removed all the same.
GO_NFT_MASQ_DEL_BUG="running \[/usr/sbin/iptables -t nat -D POSTROUTING -s [0-9.]+ -j CNI-[0-9a-f]+ .*Chain 'CNI-[0-9a-f]+' does not exist"

sc_switch() {
  local from=$1 to=$2 backend=$3 node pod id=switch-pod-1 masq='' pm='' del_rc=0
  local from_bin to_bin
  from_bin=$(switch_bin "$from")
  to_bin=$(switch_bin "$to")
  if [ "$backend" = nftables ]; then
    masq=',"ipMasqBackend":"nftables"'
    pm=',"backend":"nftables"'
  fi
  node=$(netns node)
  pod=$(netns pod)
  local bridge
  bridge=$(bridge_plugin 10.244.1.0/24 1450 | jq -c ". + {ipMasq: true$masq}")
  conflist cbr0 1.0.0 "[$bridge, {\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}$pm}]"
  export CAP_ARGS='{"portMappings":[{"hostPort":8081,"containerPort":80,"protocol":"tcp"}]}'

  CNI_BIN=$from_bin drv_ok "$node" add cbr0 "$id" "/run/netns/$pod" eth0
  # What ADD made, so the checks below cannot pass on an ADD that made nothing.
  local rules
  rules=$(switch_rules "$node" "$id")
  [ -n "$rules" ] || fail "ADD by $from left no masquerade or port mapping rule to switch over"
  echo "rules after ADD by $from:" >&2
  echo "$rules" >&2
  reserved cbr0 10.244.1.2 || fail "ADD by $from reserved no address"

  CNI_BIN=$to_bin drv "$node" del cbr0 "$id" "/run/netns/$pod" eth0 || del_rc=$?
  if [ "$del_rc" != 0 ]; then
    if [ "$to" = go-new ] && [ "$backend" = nftables ] && grep -Eq "$GO_NFT_MASQ_DEL_BUG" "$SCN_DIR/out"; then
      echo "known reference defect, tolerated: $(jq -r .error "$SCN_DIR/out")" >&2
    else
      fail "DEL by $to after ADD by $from failed: $(jq -r '.error // empty' "$SCN_DIR/out" | head -c 300)"
    fi
  fi

  rules=$(switch_rules "$node" "$id")
  [ -z "$rules" ] || fail "left after DEL by $to: $(echo "$rules" | head -5 | tr '\n' ' ')"
  ! reserved cbr0 10.244.1.2 || fail "10.244.1.2 still reserved after DEL by $to"
  no_veth "$node" || fail "a veth is left on the node after DEL by $to"
  # libcni keeps a failed DEL's cache entry, so that the runtime's retry has the prevResult.
  if [ "$del_rc" = 0 ] && [ -n "$(ls "$SCN_DIR/cache/results" 2>/dev/null | grep "$id" || true)" ]; then
    fail "libcni's cache still holds the pod"
  fi
  # A second DEL by the same implementation finds nothing and succeeds.
  if [ "$del_rc" = 0 ]; then CNI_BIN=$to_bin drv_ok "$node" del cbr0 "$id" "/run/netns/$pod" eth0; fi
}

# switch_rules <node> <container-id>: every netfilter rule of the pod, in either backend and layout.
switch_rules() {
  local node=$1 id=$2 masq_chain dn_chain
  masq_chain=CNI-$(printf '%s' "cbr0$id" | sha512sum | cut -c1-24)
  dn_chain=CNI-DN-$(printf '%s' "cbr0$id" | sha512sum | cut -c1-21)
  {
    ip netns exec "$node" iptables-save -t nat
    ip netns exec "$node" ip6tables-save -t nat
  } | grep -E -e "$masq_chain|$dn_chain" -e "id: \\\\\"$id\\\\\"" || true
  ip netns exec "$node" nft list ruleset | grep -E -e "comment \"$id\"" -e "id: $id\"" -e "weft_portmap_|weft_masquerade" |
    grep -v -E '^\s*(table|chain) ' || true
}
