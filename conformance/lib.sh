# Helpers shared by the scenarios (sourced by conformance/run and conformance/scenario).
#
# A scenario is a shell function run in a process of its own (conformance/scenario) with errexit
# and an ERR trap; it reports by exiting: 0 = PASS, `fail "reason"` = FAIL, `skip "reason"` = SKIP
# (only for what the machine lacks, e.g. a kernel feature). Everything it creates is registered with `defer`
# and undone in reverse order by the EXIT trap, whatever the outcome. All namespaces carry the
# run's prefix ($PFX) so the final leftover check can prove nothing was left behind.

# has <grep-args...>: grep that reads all its input. `grep -q` exits at the first match, and under
# pipefail the writer's SIGPIPE would turn a match into a failure.
has() { grep "$@" >/dev/null; }

# --- outcome -------------------------------------------------------------------------------------

fail() {
  [ -s "$SCN_DIR/reason" ] || printf '%s\n' "$*" >"$SCN_DIR/reason"
  exit 1
}

skip() {
  printf '%s\n' "$*" >"$SCN_DIR/skip"
  exit 77
}

# expect <description> <command...>: run a test command, FAIL the scenario with the description if it
# is false.
expect() {
  local what=$1
  shift
  "$@" || fail "$what"
}

# eventually <seconds> <command...>: poll (every 0.1 s) until the command succeeds; false on timeout.
# For kernel work that finishes after the netns is gone (veth teardown follows the netns' cleanup).
eventually() {
  local deadline=$(($(date +%s%N) + $1 * 1000000000))
  shift
  until "$@"; do
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# no_veth <node>: no pod veth left on the node (its underlay eth0 excepted).
no_veth() { [ -z "$(ip -n "$1" -br link show type veth | grep -v '^eth0@')" ]; }

# --- cleanup -------------------------------------------------------------------------------------

defer() {
  printf '%s\n' "$*" >>"$SCN_DIR/cleanup"
}

scn_cleanup() {
  local rc=$?
  if [ -f "$SCN_DIR/cleanup" ]; then
    tac "$SCN_DIR/cleanup" >"$SCN_DIR/cleanup.rev"
    while IFS= read -r cmd; do
      eval "$cmd" >>"$SCN_DIR/log.cleanup" 2>&1 || echo "cleanup failed: $cmd" >>"$SCN_DIR/log.cleanup"
    done <"$SCN_DIR/cleanup.rev"
  fi
  exit $rc
}

# --- namespaces ----------------------------------------------------------------------------------

# netns <short-name> [down]: create netns $PFX<short-name> with lo up (down: left down), deleted at
# cleanup after the processes in it are killed; prints its name. Its inode is recorded for the
# final leftover check.
netns() {
  local name="$PFX$1"
  ip netns add "$name" || fail "cannot create netns $name"
  defer "ip netns pids $name | xargs -r kill -KILL; ip netns del $name"
  stat -L -c %i "/run/netns/$name" >>"$RUN_DIR/netns"
  [ "${2:-}" = down ] || ip -n "$name" link set lo up
  echo "$name"
}

nsexec() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

# --- plugins -------------------------------------------------------------------------------------

# plugin_call <dir> <plugin> <stdin-json> VAR=value...: run a plugin binary directly with exactly the
# given CNI_ variables. Stdout goes to $SCN_DIR/pout; returns the plugin's exit code.
plugin_call() {
  local dir=$1 plugin=$2 stdin=$3 rc=0
  shift 3
  # A here-string, not a pipe: a plugin that exits without reading stdin must not SIGPIPE the writer.
  env -i PATH="$PATH" "$@" "$dir/$plugin" <<<"$stdin" >"$SCN_DIR/pout" 2>"$SCN_DIR/perr" || rc=$?
  { echo "+ $plugin $* <<< $stdin (rc=$rc)"; cat "$SCN_DIR/pout" "$SCN_DIR/perr"; echo; } >&2
  return $rc
}

# find_plugin <plugin>: its path in $CNI_BIN (':'-separated, first match).
find_plugin() {
  local d
  for d in ${CNI_BIN//:/ }; do
    if [ -x "$d/$1" ]; then echo "$d/$1"; return 0; fi
  done
  return 1
}

# need <plugin...>: FAIL the scenario unless each is in $CNI_BIN. Every plugin is implemented: an
# answer "not implemented" (code 100) is a failure like any other, never a SKIP.
need() {
  local p
  for p in "$@"; do
    find_plugin "$p" >/dev/null || fail "$p not found in $CNI_BIN"
  done
}

# plugin_versions <dir> <plugin>: the versions its VERSION answer lists, one per line.
plugin_versions() {
  env -i PATH="$PATH" CNI_COMMAND=VERSION "$1/$2" <<<'{"cniVersion":"1.0.0"}' | jq -r '.supportedVersions[]'
}

supports() { # supports <dir> <plugin> <version>
  plugin_versions "$1" "$2" | has -x "$3"
}

# --- the libcni driver ---------------------------------------------------------------------------

# conflist <name> <cniVersion> <plugins-json-array>: write $SCN_DIR/conf/<name>.conflist.
conflist() {
  mkdir -p "${NODE_DIR:-$SCN_DIR}/conf"
  jq -e 'type == "array" and length > 0 and all(.[]; type == "object")' >/dev/null 2>&1 <<<"$3" ||
    fail "conflist $1: bad plugin list '$3'"
  jq -n --arg n "$1" --arg v "$2" --argjson p "$3" '{cniVersion:$v,name:$n,plugins:$p}' >"${NODE_DIR:-$SCN_DIR}/conf/$1.conflist"
}

# drv <node-netns> <verb> <args...>: run the driver inside a node namespace against $CNI_BIN, the
# scenario's conf dir and libcni cache. Stdout -> $SCN_DIR/out.
drv() {
  local node=$1 rc=0
  shift
  ip netns exec "$node" env NETCONFPATH="${NODE_DIR:-$SCN_DIR}/conf" CNI_PATH="$CNI_BIN" CNI_CACHE_DIR="${NODE_DIR:-$SCN_DIR}/cache" \
    CAP_ARGS="${CAP_ARGS:-}" CNI_ARGS="${DRV_CNI_ARGS:-}" DRIVER_DIRECT="${DRIVER_DIRECT:-}" DRIVER_LIBCNI="${DRIVER_LIBCNI:-}" \
    "$DRIVER" "$@" >"$SCN_DIR/out" 2>"$SCN_DIR/err" || rc=$?
  { echo "+ driver $* (rc=$rc)"; cat "$SCN_DIR/out" "$SCN_DIR/err"; } >&2
  return $rc
}

# drv_ok: as drv, FAIL unless it succeeds.
drv_ok() {
  drv "$@" || fail "driver $2 $3 $4: $(jq -r '.error // empty' "$SCN_DIR/out" 2>/dev/null | head -c 300)"
}

# drv_err <code> <node> <args...>: as drv, FAIL unless it fails with error code <code> (the plugin's
# code; 0 for an error of libcni itself).
drv_err() {
  local want=$1 got
  shift
  if drv "$@"; then fail "driver $2 $3 $4 succeeded but must fail with code $want"; fi
  got=$(jq -r '.code' "$SCN_DIR/out" 2>/dev/null) || fail "driver $2 $3 $4 failed without a JSON error: $(head -c 300 "$SCN_DIR/out")"
  [ "$got" = "$want" ] || fail "driver $2 $3 $4 failed with code $got, want $want: $(jq -r '.error // empty' "$SCN_DIR/out" | head -c 300)"
}

out() { cat "$SCN_DIR/out"; }

# Defects of Debian's reference plugins (1.1.1) that the suite meets; each is in DIFFERENCES.md.
KNOWN_REF_BUGS=(
  'Expected Route \{Dst:\{IP:[0-9.]+ Mask:[0-9a-f]+\} GW:(<nil>|\\u003cnil\\u003e)\} not found in routing table'
  'could not check ipv6 dnat: chain CNI-DN-[0-9a-f]+ not found in iptables table nat'
)

# known_ref_bug: did the last driver call fail with one of KNOWN_REF_BUGS, on the reference set?
known_ref_bug() {
  local re
  [ "$TARGET" = ref ] || return 1
  for re in "${KNOWN_REF_BUGS[@]}"; do
    grep -Eq "$re" "$SCN_DIR/out" && return 0
  done
  return 1
}

# drv_check <node> <args...>: CHECK must pass; on the reference set a known defect is tolerated
# (logged) so the rest of the scenario still runs.
drv_check() {
  local node=$1
  shift
  drv "$node" check "$@" && return 0
  if known_ref_bug; then
    echo "known reference defect, tolerated: $(jq -r .error "$SCN_DIR/out")" >&2
    return 0
  fi
  fail "driver check $1 $2: $(jq -r '.error // empty' "$SCN_DIR/out" 2>/dev/null | head -c 300)"
}

# jq_true <json-file-or-"-"> <filter> <description>: FAIL unless the filter is true.
jq_true() {
  jq -e "$2" "$1" >/dev/null 2>&1 || fail "$3 (got: $(jq -c . "$1" 2>/dev/null | head -c 400))"
}

# --- configs -------------------------------------------------------------------------------------

# The delegate flannel renders for a node with FLANNEL_SUBNET <subnet>, FLANNEL_NETWORK 10.244.0.0/16,
# FLANNEL_MTU <mtu> and the stock conflist's delegate {hairpinMode, isDefaultGateway}.
bridge_plugin() { # <subnet> [mtu] [routes-json]
  local routes='[{"dst":"10.244.0.0/16"}]'
  [ -z "${3:-}" ] || routes=$3
  jq -nc --arg data "${NODE_DIR:-$SCN_DIR}/ipam" --arg s "$1" --argjson mtu "${2:-1450}" --argjson routes "$routes" \
    '{type:"bridge",bridge:"cni0",mtu:$mtu,isGateway:true,isDefaultGateway:true,hairpinMode:true,ipMasq:false,
      ipam:{type:"host-local",dataDir:$data,ranges:[[{subnet:$s}]],routes:$routes}}'
}

# weft's stock conflist (conf/10-flannel.conflist) with its files moved into the scenario's dir.
flannel_plugins() { # <subnet.env path>
  jq -c --arg env "$1" --arg data "${NODE_DIR:-$SCN_DIR}/flannel" --arg ipam "${NODE_DIR:-$SCN_DIR}/ipam" '.plugins
    | map(if .type == "flannel" then . + {subnetFile:$env, dataDir:$data, ipam:{dataDir:$ipam}} else . end)' \
    "$ROOT/conf/10-flannel.conflist"
}

subnet_env() { # <file> <subnet ip/len> [mtu]
  printf 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=%s\nFLANNEL_MTU=%s\nFLANNEL_IPMASQ=true\n' "$2" "${3:-1450}" >"$1"
}

# reserved <network> <ip>: does host-local hold <ip>?
reserved() { [ -e "${NODE_DIR:-$SCN_DIR}/ipam/$1/$2" ]; }

# --- kernel state --------------------------------------------------------------------------------

# kstate <netns>: links, addresses and routes as normalized JSON: MACs, veth names, ifindexes and
# counters masked, so two runs (weft vs reference) compare field by field. Carrier and operstate
# are left out: the kernel updates them asynchronously (linkwatch), so they race with the capture;
# the chain scenarios check the host veth's operstate where it matters.
kstate() {
  local ns=$1
  {
    ip -n "$ns" -j -d link show
    ip -n "$ns" -j addr show
    ip -n "$ns" -j route show table all
  } | jq -s -S '
    def vname: if type == "string" then sub("^veth[0-9a-f]{8}$"; "vethX") else . end;
    {
      links: (.[0] | map({ifname: (.ifname|vname), mtu,
                           flags: (.flags - ["LOWER_UP", "NO-CARRIER", "M-DOWN"] | sort), master: (.master|vname),
                           kind: (.linkinfo.info_kind // null),
                           slave_kind: (.linkinfo.info_slave_kind // null),
                           hairpin: (.linkinfo.info_slave_data.hairpin // null),
                           vxlan_id: (.linkinfo.info_data.id // null)}) | sort_by(.ifname)),
      addrs: (.[1] | map({ifname: (.ifname|vname),
                          addrs: ([.addr_info[] | select(.scope != "link") | "\(.local)/\(.prefixlen) \(.scope)"] | sort)})
                   | sort_by(.ifname)),
      routes: (.[2] | map(select(.table != "local" and (.dst|tostring|startswith("fe80")|not)
                                 and (.dst != "multicast") and ((.dst|tostring|startswith("ff0"))|not)))
                    | map({dst, gateway, dev: (.dev|vname), scope, protocol, table, prefsrc}) | sort_by(.dst, .dev))
    }'
}
