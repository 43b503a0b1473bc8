# Differential: the same requests on weft's plugins and on the reference plugins,
# results and kernel state compared field by field (MACs, veth names and netns paths masked).
# Every difference must be listed in conformance/DIFFERENCES.md as `<scenario> <path>`.

scenarios_differential() {
  local v
  for v in 0.1.0 0.2.0 0.3.0 0.3.1 0.4.0 1.0.0; do
    run_scenario "diff:results/$v" sc_diff_results "$v"
  done
  run_scenario "diff:kernel-state" sc_diff_kernel
}

# mask_result: a CNI result with what differs per run (MACs, veth names, netns paths) masked.
mask_result() {
  jq -S 'walk(if type == "object" and has("mac") then .mac = "MAC" else . end)
    | walk(if type == "string" then sub("^veth[0-9a-f]{8}$"; "vethX") | sub("^/run/netns/.*$"; "/run/netns/POD") else . end)' "$1"
}

# json_diff <scenario> <weft.json> <ref.json>: one line per differing leaf, "<scenario> <path> weft=… ref=…".
# Not called in a pipeline: fail must end the scenario, not a subshell of it.
json_diff() {
  jq -rn --arg s "$1" --slurpfile a "$2" --slurpfile b "$3" '
    def leaves: [paths(scalars or ((type == "array" or type == "object") and length == 0))];
    $a[0] as $A | $b[0] as $B
    | (($A | leaves) + ($B | leaves) | unique)[] as $p
    | (try ($A | getpath($p)) catch "<absent>") as $x
    | (try ($B | getpath($p)) catch "<absent>") as $y
    | select($x != $y)
    | "\($s) \($p | map(tostring) | join(".")) weft=\($x | tojson) ref=\($y | tojson)"' ||
    fail "jq could not compare $2 and $3"
}

# unlisted <diff-file>: the differences DIFFERENCES.md does not justify.
unlisted() {
  local key line
  while IFS= read -r line; do
    key=${line%% weft=*}
    grep -qF "\`$key\`" "$ROOT/conformance/DIFFERENCES.md" || echo "$line"
  done <"$1"
}

check_diffs() { # <diff-file>
  local bad
  bad=$(unlisted "$1")
  [ -z "$bad" ] || fail "$(echo "$bad" | wc -l) difference(s) not in DIFFERENCES.md: $(echo "$bad" | head -5 | tr '\n' ';')"
}

# diff_side <weft|ref> <version>: ADD on one plugin set, in its own node and pod namespaces.
diff_side() {
  local side=$1 v=$2 node pod
  NODE_DIR="$SCN_DIR/$side"
  mkdir -p "$NODE_DIR"
  node=$(netns "${side}n")
  pod=$(netns "${side}p")
  conflist cbr0 "$v" "[$(bridge_plugin 10.244.1.0/24)]"
  drv_ok "$node" add cbr0 c1 "/run/netns/$pod" eth0
  mask_result "$SCN_DIR/out" >"$SCN_DIR/$side.result.json"
  kstate "$node" >"$SCN_DIR/$side.node.json"
  kstate "$pod" >"$SCN_DIR/$side.pod.json"
  drv_ok "$node" del cbr0 c1 "/run/netns/$pod" eth0
  kstate "$node" >"$SCN_DIR/$side.node-after-del.json"
  unset NODE_DIR
}

diff_both() { # <version>
  CNI_BIN=$WEFT_BIN TARGET=weft need bridge host-local
  CNI_BIN=$REF_BIN TARGET=ref need bridge host-local
  CNI_BIN=$WEFT_BIN TARGET=weft diff_side weft "$1"
  CNI_BIN=$REF_BIN TARGET=ref diff_side ref "$1"
}

sc_diff_results() {
  local v=$1
  diff_both "$v"
  json_diff "diff:results/$v" "$SCN_DIR/weft.result.json" "$SCN_DIR/ref.result.json" >"$SCN_DIR/diffs"
  cat "$SCN_DIR/diffs" >&2
  check_diffs "$SCN_DIR/diffs"
}

sc_diff_kernel() {
  diff_both 1.0.0
  : >"$SCN_DIR/diffs"
  for f in node pod node-after-del; do
    json_diff "diff:kernel-state/$f" "$SCN_DIR/weft.$f.json" "$SCN_DIR/ref.$f.json" >>"$SCN_DIR/diffs"
  done
  cat "$SCN_DIR/diffs" >&2
  check_diffs "$SCN_DIR/diffs"
}
