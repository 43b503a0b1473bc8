# Run last: nothing the run created may survive it. Namespaces and host links carry the run's
# prefix; processes are found by the network namespace they are in (netns records each one's inode
# when it creates it, since a deleted namespace that a process still holds has no name left) or by a
# command line that points into the run's directories.

scenarios_cleanup() {
  run_scenario cleanup/no-leftovers sc_no_leftovers
}

sc_no_leftovers() {
  local ns links procs
  ns=$(ip netns list | awk '{print $1}' | grep "^$PFX" || true)
  links=$(ip -br link | awk '{print $1}' | grep "^$PFX" || true)
  # A process killed by a scenario's cleanup can take a moment to exit.
  no_processes() { [ -z "$(suite_processes)" ]; }
  eventually 10 no_processes || true
  procs=$(suite_processes)
  [ -z "$ns$links$procs" ] || fail "left behind: $(echo $ns $links) $procs"
}

# suite_processes: "pid (command line)" of each process of this run still alive, this check's own
# shell and its ancestors excepted.
suite_processes() {
  local inodes=" " self=" " pid ino path args p
  [ ! -f "$RUN_DIR/netns" ] || inodes=" $(tr '\n' ' ' <"$RUN_DIR/netns")"
  p=$BASHPID
  while [ "$p" -gt 1 ]; do
    self+="$p "
    p=$(sed 's/.*) //' "/proc/$p/stat" | cut -d' ' -f2)
  done
  # Another run's namespace can be given an inode this run's deleted one had: those it names are not ours.
  for path in /run/netns/*; do
    [ -e "$path" ] && [[ ${path#/run/netns/} != "$PFX"* ]] || continue
    ino=$(stat -L -c %i "$path" 2>/dev/null) || continue
    inodes=${inodes// $ino / }
  done
  while read -r ino path; do
    pid=${path#/proc/}
    pid=${pid%%/*}
    [[ $self != *" $pid "* ]] || continue
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    [ -n "$args" ] || continue # a kernel thread
    if [[ $inodes == *" $ino "* || $args == *"$WORK/"* || $args == *"$RUN_DIR/"* ]]; then
      echo "process $pid ($args)"
    fi
  done < <(stat -L -c '%i %n' /proc/[0-9]*/ns/net 2>/dev/null || true) # processes come and go meanwhile
}
