/**
 * Crash injection, for test/reliability/crash.test.ts: a plugin started with WEFT_CRASH_AT=<point>
 * in its environment SIGKILLs itself on reaching that point of ADD, as the OOM killer, a runtime's
 * timeout or a power cut would stop it, so the test can show that DEL and GC still clean up after
 * every step. Without the variable (always, in production) a point is one environment lookup.
 */
export const CRASH_POINTS = [
  // flannel: the delegate config is saved, nothing delegated yet; the delegate answered.
  "flannel:saved",
  "flannel:delegated",
  // bridge, in ADD's order (host-local runs meanwhile, in the same process when it is weft's).
  "bridge:bridge",
  "bridge:veth",
  "bridge:port",
  "bridge:ipam",
  "bridge:addresses",
  "bridge:gateway",
  "bridge:masquerade",
  "bridge:done",
  // host-local: an address file written, the cursor not yet; the allocation made, the lock let go.
  "host-local:reserved",
  "host-local:allocated",
  // portmap: the rules are in, the result not yet printed.
  "portmap:rules",
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

export function crashPoint(point: CrashPoint): void {
  if (process.env.WEFT_CRASH_AT === point) process.kill(process.pid, "SIGKILL");
}
