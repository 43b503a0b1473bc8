# The suite's own verdicts (run first): a scenario run inside a scenario, with the runner's
# run_scenario, must end as it should. A failing command FAILs wherever it is; a jq error in a
# differential comparison FAILs; drv_err wants the right code; a process left running is found by
# the leftover check, and one started in a scenario's namespace is ended by its cleanup.

scenarios_selftest() {
  run_scenario selftest/failing-command-fails sc_selftest_failing_command
  run_scenario selftest/diff-jq-error-fails sc_selftest_diff_jq_error
  run_scenario selftest/drv-err-checks-code sc_selftest_drv_err
  run_scenario selftest/processes sc_selftest_processes
}

# inner <want PASS|FAIL|SKIP> <reason-pattern> <function> [args...]: run <function> as a scenario of
# its own and FAIL unless it reports <want> with a reason matching the extended regex.
inner() {
  local want=$1 re=$2 fn=$3 name="selftest-inner/$3" line
  shift 3
  defer "rm -rf $WORK/scn/${name//\//_}"
  line=$(ONLY= run_scenario "$name" "$fn" "$@")
  echo "inner: $line" >&2
  [[ $line == "$want $name"* ]] || fail "$fn: want $want, got: $line"
  [[ $line =~ $re ]] || fail "$fn: the reason does not match /$re/: $line"
}

st_false() {
  false
  echo "ran on after a failing command" >"$SCN_DIR/reason"
}
st_false_in_function() {
  st_helper() { false; echo "ran on" >"$SCN_DIR/reason"; }
  st_helper
}
st_false_in_substitution() {
  local x
  x=$(false; echo "ran on")
  echo "$x" >"$SCN_DIR/reason"
}
st_exit_77_without_skip() { exit 77; }
st_unbound_variable() { echo "$st_no_such_variable"; }
st_tested_command_passes() {
  if false; then fail "if took the wrong branch"; fi
  false || true
}

sc_selftest_failing_command() {
  inner FAIL 'unexpected error at selftest.sh:[0-9]+: false' st_false
  inner FAIL 'unexpected error at selftest.sh:[0-9]+: false' st_false_in_function
  inner FAIL 'unexpected error at selftest.sh:[0-9]+: false' st_false_in_substitution
  # Called from a tested context, where a subshell would ignore errexit: still a FAIL.
  if ! inner FAIL 'unexpected error' st_false; then fail "inner failed"; fi
  inner FAIL 'exit 77 without' st_exit_77_without_skip
  inner FAIL 'st_no_such_variable: unbound variable' st_unbound_variable
  inner PASS '' st_tested_command_passes
}

st_diff_broken_json() {
  echo '{"ips": [' >"$SCN_DIR/weft.json"
  echo '{"ips": []}' >"$SCN_DIR/ref.json"
  json_diff selftest "$SCN_DIR/weft.json" "$SCN_DIR/ref.json" >"$SCN_DIR/diffs"
  check_diffs "$SCN_DIR/diffs"
}
st_diff_real_difference() {
  echo '{"ips": [1]}' >"$SCN_DIR/weft.json"
  echo '{"ips": [2]}' >"$SCN_DIR/ref.json"
  json_diff selftest "$SCN_DIR/weft.json" "$SCN_DIR/ref.json" >"$SCN_DIR/diffs"
  check_diffs "$SCN_DIR/diffs"
}

sc_selftest_diff_jq_error() {
  inner FAIL 'jq could not compare' st_diff_broken_json
  inner FAIL '1 difference\(s\) not in DIFFERENCES.md: selftest ips.0 weft=1 ref=2' st_diff_real_difference
}

# A driver that answers as libcni does for a plugin's error: {"code": N, ...} on stdout, exit 1.
st_fake_driver() { # <code> <exit>
  printf '#!/bin/sh\necho %s\nexit %s\n' "'{\"code\": $1, \"msg\": \"fake\", \"error\": \"fake error\"}'" "$2" >"$SCN_DIR/driver"
  chmod +x "$SCN_DIR/driver"
  DRIVER=$SCN_DIR/driver
}
st_drv_err() { # <code the driver answers> <code wanted> [driver exit]
  local node
  node=$(netns node)
  st_fake_driver "$1" "${3:-1}"
  CNI_BIN=$SCN_DIR drv_err "$2" "$node" check net c1 /run/netns/none eth0
}

sc_selftest_drv_err() {
  inner PASS '' st_drv_err 7 7
  inner FAIL 'failed with code 11, want 7' st_drv_err 11 7
  inner FAIL 'succeeded but must fail with code 7' st_drv_err 7 7 0
}

st_leave_process() { # <file>: a process in a namespace of the suite, left alive by a cleanup that only deletes the namespace
  local ns=${PFX}leak
  ip netns add "$ns"
  defer "ip netns del $ns"
  stat -L -c %i "/run/netns/$ns" >>"$RUN_DIR/netns"
  ip netns exec "$ns" sleep 600 </dev/null >/dev/null 2>&1 &
  started() { ip netns pids "$ns" >"$1" && [ -s "$1" ]; }
  eventually 10 started "$1"
}
st_start_in_netns() { # <file>: as chain.sh's web server: started in a namespace of netns, through a function, in the background
  local ns
  ns=$(netns srv)
  nsexec "$ns" sleep 600 </dev/null >/dev/null 2>&1 &
  started() { ip netns pids "$ns" >"$1" && [ -s "$1" ]; }
  eventually 10 started "$1"
}

sc_selftest_processes() {
  local pid found
  inner PASS '' st_start_in_netns "$SCN_DIR/started"
  pid=$(cat "$SCN_DIR/started")
  gone() { [ ! -e "/proc/$pid" ] || [ "$(awk '{print $3}' "/proc/$pid/stat")" = Z ]; }
  eventually 10 gone || fail "process $pid started in a scenario's namespace outlived the scenario"

  inner PASS '' st_leave_process "$SCN_DIR/left"
  pid=$(cat "$SCN_DIR/left")
  defer "kill $pid 2>/dev/null"
  found=$(suite_processes)
  echo "found: $found" >&2
  [[ $found == *"process $pid (sleep 600 )"* ]] || fail "the leftover check did not find process $pid in a deleted namespace of the suite: $found"
  kill "$pid"
  exec -a "$WORK/selftest-leak" sleep 600 </dev/null >/dev/null 2>&1 &
  pid=$!
  defer "kill $pid 2>/dev/null"
  found=$(suite_processes)
  [[ $found == *"process $pid ($WORK/selftest-leak 600 )"* ]] || fail "the leftover check did not find process $pid named into the work dir: $found"
  kill "$pid"
}
