# The runner's counting and run_scenario (sourced by conformance/run, and by the self-test scenarios,
# which run scenarios inside a scenario to check the verdicts).
#
# Scenarios of the reference set alone (name "ref:...", no weft plugin on their CNI_PATH) test
# Debian's plugins and the suite, not weft: they are counted apart (REF_*), and still fail the run.

PASSED=0 FAILED=0 SKIPPED=0
REF_PASSED=0 REF_FAILED=0 REF_SKIPPED=0

# reference_only <name>: is this scenario one of the reference set alone?
reference_only() {
  [[ $1 == ref:* ]] && [[ ":${CNI_BIN:-}:" != *":$WEFT_BIN:"* ]]
}

report() { # <PASS|FAIL|SKIP> <name> [reason]
  local ref=
  reference_only "$2" && ref=REF_
  case $1 in
    PASS) eval "${ref}PASSED=\$((${ref}PASSED + 1))"; echo "PASS $2" ;;
    FAIL) eval "${ref}FAILED=\$((${ref}FAILED + 1))"; echo "FAIL $2: $3" ;;
    SKIP) eval "${ref}SKIPPED=\$((${ref}SKIPPED + 1))"; echo "SKIP $2: $3" ;;
  esac
}

# run_scenario <name> <function> [args...]: run it with its own dir and cleanup, in a process of its
# own (conformance/scenario), and report PASS (exit 0), SKIP (77) or FAIL (anything else). Not in a
# subshell: bash ignores errexit and the ERR trap inside a subshell whose status is tested, as in
# `( ... ) || rc=$?`, and in everything it calls; a new process starts with them in force.
run_scenario() {
  local name=$1 fn=$2
  shift 2
  if [ -n "${ONLY:-}" ] && ! [[ $name =~ $ONLY ]]; then return 0; fi
  local dir="$WORK/scn/${name//\//_}" t0 rc
  dir=${dir//:/_}
  rm -rf "$dir"
  mkdir -p "$dir"
  t0=$(date +%s%N)
  SCN_DIR=$dir SCN_NAME=$name "$BASH" "$ROOT/conformance/scenario" "$fn" "$@" >"$dir/log" 2>&1 </dev/null && rc=0 || rc=$?
  echo "$name $((($(date +%s%N) - t0) / 1000000))ms" >>"$WORK/times"
  case $rc in
    0) report PASS "$name" ;;
    77) if [ -s "$dir/skip" ]; then report SKIP "$name" "$(head -c 400 "$dir/skip")"; else
      report FAIL "$name" "exit 77 without skip's reason [log: ${dir#$ROOT/}/log]"; rc=1; fi ;;
    *) report FAIL "$name" "$({ head -c 600 "$dir/reason" 2>/dev/null || grep -v '^+' "$dir/log" | tail -n 1 | head -c 600; } | tr '\n' ' ') (exit $rc) [log: ${dir#$ROOT/}/log]" ;;
  esac
  if [ "$rc" = 0 ] || [ "$rc" = 77 ]; then
    [ -n "${CONFORMANCE_KEEP:-}" ] || rm -rf "$dir"
  fi
}
