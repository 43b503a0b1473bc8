# Protocol scenarios: every verb on every plugin, every spec version through a
# conflist, CHECK after tampering, repeated DEL, DEL without a netns, GC, STATUS.

ALL_VERSIONS="0.1.0 0.2.0 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0"

target_plugins() {
  case $TARGET in
    weft) echo "$WEFT_PROGRAMS" ;;
    *) echo "$SHARED_PLUGINS" ;;
  esac
}

scenarios_protocol() {
  run_scenario "$TARGET:version" sc_version
  run_scenario "$TARGET:errors" sc_errors
  run_scenario "$TARGET:loopback" sc_loopback
  run_scenario "$TARGET:host-local" sc_host_local
  local v
  for v in $ALL_VERSIONS; do
    [ "$v" != 1.1.0 ] || set_supports_11 bridge host-local || continue
    run_scenario "$TARGET:cniVersion/$v" sc_cni_version "$v"
  done
  run_scenario "$TARGET:check-after-tamper" sc_check_tamper
  run_scenario "$TARGET:del-twice" sc_del_twice
  run_scenario "$TARGET:del-netns-gone" sc_del_netns_gone
  # A set that predates spec 1.1.0 (Debian's reference plugins) has no GC or STATUS to test: it
  # must refuse them, and ADD at 1.1.0, instead.
  # shellcheck disable=SC2086
  if set_supports_11 $SHARED_PLUGINS; then
    run_scenario "$TARGET:gc" sc_gc
    run_scenario "$TARGET:status" sc_status
  else
    run_scenario "$TARGET:refuses-1.1.0" sc_refuses_11
  fi
}

# set_supports_11 <plugin...>: does each of them in $CNI_BIN list spec 1.1.0?
set_supports_11() {
  local p path
  for p in "$@"; do
    path=$(find_plugin "$p") && supports "$(dirname "$path")" "$p" 1.1.0 || return 1
  done
}

# Conflist routes with an explicit gw: the reference bridge 1.1.1's CHECK cannot match a route
# without one (see DIFFERENCES.md); the flannel-shaped gw-less routes are tested in chain/.
GW_ROUTES='[{"dst":"10.244.0.0/16","gw":"10.244.1.1"}]'

# VERSION on every plugin, directly and through libcni's GetVersionInfo.
sc_version() {
  local p want got
  for p in $(target_plugins); do
    plugin_call "$CNI_BIN" "$p" '{"cniVersion":"1.0.0"}' CNI_COMMAND=VERSION || fail "$p VERSION exited non-zero"
    jq_true "$SCN_DIR/pout" '.supportedVersions | type == "array"' "$p VERSION has no supportedVersions"
    jq_true "$SCN_DIR/pout" '.cniVersion | type == "string"' "$p VERSION has no cniVersion"
    got=$(jq -r '.supportedVersions | join(" ")' "$SCN_DIR/pout")
    if [ "$TARGET" = weft ]; then
      want=$ALL_VERSIONS
      [ "$got" = "$want" ] || fail "$p VERSION lists [$got], want [$want]"
    else
      for want in 0.1.0 0.2.0 0.3.0 0.3.1 0.4.0 1.0.0; do
        [[ " $got " == *" $want "* ]] || fail "$p VERSION lacks $want: [$got]"
      done
    fi
    mkdir -p "$SCN_DIR/conf"
    env NETCONFPATH="$SCN_DIR/conf" CNI_PATH="$CNI_BIN" CNI_CACHE_DIR="$SCN_DIR/cache" "$DRIVER" version "$p" >"$SCN_DIR/out" ||
      fail "libcni GetVersionInfo($p) failed: $(cat "$SCN_DIR/out")"
    [ "$(jq -r '.supportedVersions | join(" ")' "$SCN_DIR/out")" = "$got" ] ||
      fail "libcni reads $p's versions as $(cat "$SCN_DIR/out"), the plugin printed [$got]"
  done
}

# The error rules every plugin shares (spec "Error" section, skel): env missing, unknown verb,
# unsupported version, bad name, bad ifname, undecodable config, CHECK/STATUS/GC below their version.
# These fail before any networking, so they run on weft's placeholders too.
sc_errors() {
  local p conf env code
  env="CNI_CONTAINERID=c1 CNI_NETNS=$SCN_DIR/no-such-netns CNI_IFNAME=eth0 CNI_PATH=$CNI_BIN"
  for p in $(target_plugins); do
    conf() { jq -nc --arg v "$1" --arg n "${2:-net1}" --arg p "$p" --arg d "$SCN_DIR/ipam" \
      '{cniVersion:$v,name:$n,type:$p,ipam:{type:"host-local",dataDir:$d,ranges:[[{subnet:"10.99.0.0/24"}]]}}'; }
    # code <want> <what> <stdin> <env...>
    code() {
      local want=$1 what=$2 stdin=$3 got
      shift 3
      if plugin_call "$CNI_BIN" "$p" "$stdin" "$@"; then fail "$p: $what succeeded, want error code $want"; fi
      got=$(jq -r '.code // empty' "$SCN_DIR/pout" 2>/dev/null || true)
      [ "$got" = "$want" ] || fail "$p: $what gave code '${got}' ($(head -c 200 "$SCN_DIR/pout")), want $want"
    }
    code 4 "ADD without CNI_CONTAINERID/NETNS/IFNAME/PATH" "$(conf 1.0.0)" CNI_COMMAND=ADD
    for var in CNI_NETNS CNI_IFNAME; do
      grep -q "$var" "$SCN_DIR/pout" || fail "$p: the missing-env error does not name $var: $(cat "$SCN_DIR/pout")"
    done
    code 4 "unknown CNI_COMMAND" "$(conf 1.0.0)" CNI_COMMAND=BOGUS $env
    code 1 "ADD with cniVersion 9.9.9" "$(conf 9.9.9)" CNI_COMMAND=ADD $env
    code 7 "ADD with network name 'x y'" "$(conf 1.0.0 'x y')" CNI_COMMAND=ADD $env
    code 4 "ADD with CNI_IFNAME a/b" "$(conf 1.0.0)" CNI_COMMAND=ADD ${env/CNI_IFNAME=eth0/CNI_IFNAME=a\/b}
    code 6 "ADD with truncated JSON" '{"cniVersion":"1.0.0","name":' CNI_COMMAND=ADD $env
    code 1 "CHECK with cniVersion 0.3.1" "$(conf 0.3.1)" CNI_COMMAND=CHECK $env
    if supports "$CNI_BIN" "$p" 1.1.0; then
      code 1 "STATUS with cniVersion 1.0.0" "$(conf 1.0.0)" CNI_COMMAND=STATUS CNI_PATH="$CNI_BIN"
      code 1 "GC with cniVersion 1.0.0" "$(conf 1.0.0)" CNI_COMMAND=GC CNI_PATH="$CNI_BIN"
    fi
  done
  [ ! -e "$SCN_DIR/ipam" ] || fail "a refused request reserved an address: $(ls -R "$SCN_DIR/ipam")"
}

sc_loopback() {
  need loopback
  local node pod
  node=$(netns node)
  pod=$(netns pod down)
  conflist lo 1.0.0 '[{"type":"loopback"}]'
  drv_ok "$node" add lo c1 "/run/netns/$pod" eth0
  jq_true "$SCN_DIR/out" '.cniVersion == "1.0.0" and .interfaces[0].name == "lo"' "ADD result does not describe lo"
  ip -n "$pod" link show lo | has '<LOOPBACK,UP' || fail "lo is not up after ADD"
  nsexec "$pod" "$PINGDF" 127.0.0.1 84 1 >/dev/null || fail "no ping on lo after ADD"
  drv_ok "$node" check lo c1 "/run/netns/$pod" eth0
  drv_ok "$node" del lo c1 "/run/netns/$pod" eth0
  ip -n "$pod" link show lo | has '<LOOPBACK,UP' && fail "lo is still up after DEL"
  drv_ok "$node" del lo c1 "/run/netns/$pod" eth0
  drv_ok "$node" del lo c1 "" eth0
}

sc_host_local() {
  need host-local
  local node
  node=$(netns node)
  conflist ipam 1.0.0 "$(jq -nc --arg d "$SCN_DIR/ipam" \
    '[{type:"host-local",ipam:{type:"host-local",dataDir:$d,ranges:[[{subnet:"10.244.9.0/24"}]],routes:[{dst:"10.244.0.0/16"}]}}]')"
  drv_ok "$node" add ipam c1 "/run/netns/none" eth0
  jq_true "$SCN_DIR/out" '.ips[0].address == "10.244.9.2/24" and .ips[0].gateway == "10.244.9.1" and .routes == [{"dst":"10.244.0.0/16"}]' \
    "first address of 10.244.9.0/24 is not .2 with gateway .1"
  reserved ipam 10.244.9.2 || fail "no reservation file ipam/10.244.9.2"
  [ "$(cat "$SCN_DIR/ipam/ipam/10.244.9.2")" = "$(printf 'c1\r\neth0')" ] ||
    fail "reservation file is not '<cid>\\r\\n<ifname>' (the reference's layout): $(od -c "$SCN_DIR/ipam/ipam/10.244.9.2" | head -2)"
  drv_ok "$node" add ipam c2 "/run/netns/none" eth0
  jq_true "$SCN_DIR/out" '.ips[0].address == "10.244.9.3/24"' "second container did not get .3"
  drv_ok "$node" check ipam c1 "/run/netns/none" eth0
  drv_ok "$node" del ipam c1 "/run/netns/none" eth0
  reserved ipam 10.244.9.2 && fail "DEL did not release 10.244.9.2"
  drv_ok "$node" add ipam c3 "/run/netns/none" eth0
  jq_true "$SCN_DIR/out" '.ips[0].address == "10.244.9.4/24"' "allocation is not round-robin after a release (want .4)"
  drv_err "$(check_failed_code)" "$node" check ipam c1 "/run/netns/none" eth0
  for c in c2 c3; do drv_ok "$node" del ipam $c "/run/netns/none" eth0; done
  [ -z "$(ls "$SCN_DIR/ipam/ipam" | grep -v -e '^lock$' -e '^last_reserved_ip')" ] ||
    fail "reservations left after DEL: $(ls "$SCN_DIR/ipam/ipam")"
}

# The result shape each version must have (SPEC "Result" per version, REFERENCE 1.7).
result_shape() { # <version> [address]
  local a=${2:-10.244.1.2}
  case $1 in
    0.1.0 | 0.2.0) echo "(.ip4.ip == \"$a/24\") and (.ip4.gateway == \"10.244.1.1\") and (has(\"interfaces\")|not) and (has(\"ips\")|not)" ;;
    0.3.0 | 0.3.1 | 0.4.0) echo "(.ips[0].version == \"4\") and (.ips[0].address == \"$a/24\") and (.ips[0].interface == 2) and (.interfaces|length == 3) and (.interfaces[2].name == \"eth0\")" ;;
    *) echo "(.ips[0]|has(\"version\")|not) and (.ips[0].address == \"$a/24\") and (.ips[0].interface == 2) and (.interfaces|length == 3) and (.interfaces[2].name == \"eth0\")" ;;
  esac
}

sc_cni_version() {
  local v=$1 node pod ip=10.244.1.2
  need bridge host-local
  node=$(netns node)
  pod=$(netns pod)
  conflist cbr0 "$v" "[$(bridge_plugin 10.244.1.0/24 1450 "$GW_ROUTES")]"
  if [ "$v" = 1.1.0 ]; then
    # libcni 1.1.2 itself (containerd 1.6): the plugins do ADD, then libcni cannot parse a 1.1.0
    # result; the ADD fails and the runtime's DEL must clean everything.
    DRIVER_LIBCNI=1 drv_err 0 "$node" add cbr0 c0 "/run/netns/$pod" eth0
    grep -q 'unsupported CNI result version' "$SCN_DIR/out" ||
      fail "libcni 1.1.2 with a 1.1.0 result: expected 'unsupported CNI result version', got $(cat "$SCN_DIR/out")"
    DRIVER_LIBCNI=1 drv_ok "$node" del cbr0 c0 "/run/netns/$pod" eth0
    ip -n "$pod" link show eth0 >/dev/null 2>&1 && fail "eth0 left in the pod after libcni's failed ADD and DEL"
    [ -z "$(ls "$SCN_DIR/ipam/cbr0" 2>/dev/null | grep '^10\.')" ] || fail "address left reserved after libcni's DEL"
    ip=10.244.1.3 # host-local's round robin moved on
  fi
  drv_ok "$node" add cbr0 c1 "/run/netns/$pod" eth0
  jq_true "$SCN_DIR/out" ".cniVersion == \"$v\"" "ADD result is not cniVersion $v"
  jq_true "$SCN_DIR/out" "$(result_shape "$v" "$ip")" "ADD result does not have the $v shape"
  [ -e "$SCN_DIR/cache/results/cbr0-c1-eth0" ] || fail "no libcni cache entry after ADD"
  drv_ok "$node" cached cbr0 c1 eth0
  jq_true "$SCN_DIR/out" "$(result_shape "$v" "$ip")" "the cached result read back at $v does not have the $v shape"
  ip -n "$pod" -4 addr show eth0 | has "inet $ip/24" || fail "eth0 has no $ip/24"
  if [ "$(printf '%s\n0.4.0\n' "$v" | sort -V | head -1)" = 0.4.0 ]; then
    drv_ok "$node" check cbr0 c1 "/run/netns/$pod" eth0
  else
    drv_err 0 "$node" check cbr0 c1 "/run/netns/$pod" eth0
    grep -q 'does not support the CHECK command' "$SCN_DIR/out" || fail "CHECK at $v: unexpected error $(cat "$SCN_DIR/out")"
  fi
  drv_ok "$node" del cbr0 c1 "/run/netns/$pod" eth0
  [ -e "$SCN_DIR/cache/results/cbr0-c1-eth0" ] && fail "libcni cache entry left after DEL"
  reserved cbr0 "$ip" && fail "$ip still reserved after DEL"
  ip -n "$pod" link show eth0 >/dev/null 2>&1 && fail "eth0 still in the pod after DEL"
  no_veth "$node" || fail "host veth left after DEL: $(ip -n "$node" -br link show type veth)"
}

# host_veth: the host-side interface name in the last ADD result.
host_veth() { jq -r '.interfaces[1].name' "$SCN_DIR/out"; }

# The code of a CHECK that found the attachment changed: weft's CheckFailed; the Go plugins print
# every failure of their own as 999.
check_failed_code() { if [ "$TARGET" = weft ]; then echo 101; else echo 999; fi; }

# Each tampering on a pod of its own, so that each CHECK failure has one cause.
sc_check_tamper() {
  need bridge host-local
  local node v3 i
  node=$(netns node)
  for i in 1 2 3 4; do netns "p$i" >/dev/null; done
  conflist cbr0 1.0.0 "[$(bridge_plugin 10.244.1.0/24 1450 "$GW_ROUTES")]"
  for i in 1 2 3 4; do
    drv_ok "$node" add cbr0 c$i "/run/netns/$PFX"p$i eth0
    [ $i != 3 ] || v3=$(host_veth)
  done
  for i in 1 2 3 4; do drv_ok "$node" check cbr0 c$i "/run/netns/$PFX"p$i eth0; done
  # said <extended-regex>: the last CHECK's error names what was changed (weft's words|the Go plugins').
  said() { has -E "$1" "$SCN_DIR/out" || fail "the CHECK error does not say what changed (want /$1/): $(jq -r .error "$SCN_DIR/out")"; }
  ip -n "$PFX"p1 addr flush dev eth0
  drv_err "$(check_failed_code)" "$node" check cbr0 c1 "/run/netns/$PFX"p1 eth0
  said 'address 10.244.1.2/24 not on eth0|Failed to match addr 10.244.1.2/24 on interface eth0'
  rm "$SCN_DIR/ipam/cbr0/10.244.1.3"
  drv_err "$(check_failed_code)" "$node" check cbr0 c2 "/run/netns/$PFX"p2 eth0
  said 'Failed to find address added by container c2'
  ip -n "$node" link set "$v3" nomaster
  drv_err "$(check_failed_code)" "$node" check cbr0 c3 "/run/netns/$PFX"p3 eth0
  said "$v3 is not a port of cni0|CNI veth created for bridge cni0 was not found"
  ip -n "$PFX"p4 link set eth0 down
  drv_err "$(check_failed_code)" "$node" check cbr0 c4 "/run/netns/$PFX"p4 eth0
  said 'eth0 is down|Failed to find Gateway 10.244.1.1 for interface eth0'
  for i in 1 2 3 4; do drv_ok "$node" del cbr0 c$i "/run/netns/$PFX"p$i eth0; done
}

sc_del_twice() {
  need bridge host-local
  local node pod
  node=$(netns node)
  pod=$(netns pod)
  conflist cbr0 1.0.0 "[$(bridge_plugin 10.244.1.0/24)]"
  drv_ok "$node" add cbr0 c1 "/run/netns/$pod" eth0
  drv_ok "$node" del cbr0 c1 "/run/netns/$pod" eth0
  drv_ok "$node" del cbr0 c1 "/run/netns/$pod" eth0
  drv_ok "$node" del cbr0 never-added "/run/netns/$pod" eth0
  drv_ok "$node" del cbr0 never-added "" eth0
  reserved cbr0 10.244.1.2 && fail "10.244.1.2 still reserved"
  ip -n "$pod" link show eth0 >/dev/null 2>&1 && fail "eth0 still in the pod"
  return 0
}

sc_del_netns_gone() {
  need bridge host-local
  local node p1 p2
  node=$(netns node)
  p1=$(netns p1) p2=$(netns p2)
  conflist cbr0 1.0.0 "[$(bridge_plugin 10.244.1.0/24)]"
  drv_ok "$node" add cbr0 c1 "/run/netns/$p1" eth0
  drv_ok "$node" add cbr0 c2 "/run/netns/$p2" eth0
  ip netns del "$p1"
  ip netns del "$p2"
  drv_ok "$node" del cbr0 c1 "/run/netns/$p1" eth0
  drv_ok "$node" del cbr0 c2 "" eth0
  reserved cbr0 10.244.1.2 && fail "10.244.1.2 (netns path gone) still reserved"
  reserved cbr0 10.244.1.3 && fail "10.244.1.3 (empty CNI_NETNS) still reserved"
  eventually 5 no_veth "$node" || fail "host veths left: $(ip -n "$node" -br link show type veth)"
  [ -z "$(ls "$SCN_DIR/cache/results" 2>/dev/null)" ] || fail "libcni cache entries left"
}

# A set that predates spec 1.1.0: ADD at 1.1.0 is refused with code 1 and leaves nothing; GC and
# STATUS at 1.1.0 are refused by each plugin that does not list 1.1.0.
sc_refuses_11() {
  local node pod p dir verb
  # shellcheck disable=SC2086
  need $SHARED_PLUGINS
  node=$(netns node)
  pod=$(netns pod)
  if ! set_supports_11 bridge host-local; then
    conflist cbr0 1.1.0 "[$(bridge_plugin 10.244.1.0/24 1450 "$GW_ROUTES")]"
    drv_err 1 "$node" add cbr0 c1 "/run/netns/$pod" eth0
    ip -n "$pod" link show eth0 >/dev/null 2>&1 && fail "the refused ADD left eth0 in the pod"
    [ -z "$(ls "$SCN_DIR/ipam/cbr0" 2>/dev/null | grep '^10\.' || true)" ] || fail "the refused ADD reserved an address"
  fi
  for p in $SHARED_PLUGINS; do
    dir=$(dirname "$(find_plugin "$p")")
    ! supports "$dir" "$p" 1.1.0 || continue
    for verb in GC STATUS; do
      if plugin_call "$dir" "$p" "{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"type\":\"$p\"}" CNI_COMMAND=$verb CNI_PATH="$CNI_BIN"; then
        fail "$p does not list 1.1.0 yet accepted $verb"
      fi
    done
  done
}

sc_gc() {
  need bridge host-local portmap
  local node p1 p2
  node=$(netns node)
  p1=$(netns p1) p2=$(netns p2)
  conflist cbr0 1.1.0 "[$(bridge_plugin 10.244.1.0/24), {\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}]"
  drv_ok "$node" add cbr0 c1 "/run/netns/$p1" eth0
  drv_ok "$node" add cbr0 c2 "/run/netns/$p2" eth0
  # The runtime loses c2 (crash, no DEL): its cache entry and netns are gone, its IP is still held.
  rm "$SCN_DIR/cache/results/cbr0-c2-eth0"
  ip netns del "$p2"
  reserved cbr0 10.244.1.3 || fail "c2's address is not reserved before GC"
  drv_ok "$node" gc cbr0 c1/eth0
  reserved cbr0 10.244.1.3 && fail "GC with valid-attachments [c1/eth0] did not release c2's 10.244.1.3"
  reserved cbr0 10.244.1.2 || fail "GC released c1's 10.244.1.2, which is in valid-attachments"
  drv_ok "$node" check cbr0 c1 "/run/netns/$p1" eth0
  # An empty valid list: the runtime DELs c1 from its cache, then GC finds nothing else.
  drv_ok "$node" gc cbr0
  reserved cbr0 10.244.1.2 && fail "GC with no valid attachments left 10.244.1.2 reserved"
  ip -n "$p1" link show eth0 >/dev/null 2>&1 && fail "GC did not DEL the cached attachment c1"
  return 0
}

sc_status() {
  # shellcheck disable=SC2086
  need $SHARED_PLUGINS
  local node
  node=$(netns node)
  conflist cbr0 1.1.0 "[$(bridge_plugin 10.244.1.0/24), {\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}]"
  conflist lo 1.1.0 '[{"type":"loopback"}]'
  conflist ipam 1.1.0 "$(jq -nc --arg d "$SCN_DIR/ipam" '[{type:"host-local",ipam:{type:"host-local",dataDir:$d,ranges:[[{subnet:"10.244.9.0/24"}]]}}]')"
  drv_ok "$node" status cbr0
  drv_ok "$node" status lo
  drv_ok "$node" status ipam
  [ ! -s "$SCN_DIR/out" ] || fail "STATUS success printed something: $(cat "$SCN_DIR/out")"
  # STATUS must not need the attachment variables, and must not reserve anything.
  [ -z "$(ls "$SCN_DIR/ipam" 2>/dev/null)" ] || [ -z "$(ls "$SCN_DIR/ipam"/*/ | grep '^10\.')" ] ||
    fail "STATUS reserved an address"
}
