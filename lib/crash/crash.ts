/**
 * Crash injection, for test/reliability/crash.test.ts: a plugin started with WEFT_CRASH_AT=<point>
 * in its environment SIGKILLs itself on reaching that point of ADD, as the OOM killer, a runtime's
 * timeout or a power cut would stop it, so the test can show that DEL and GC still clean up after
 * every step. Without the variable (always, in production) a point is one environment lookup. Each
 * program's points are listed with it in plugins/registry.ts.
 */
export function crashPoint(point: `${string}:${string}`): void {
  if (process.env.WEFT_CRASH_AT === point) process.kill(process.pid, "SIGKILL");
}
