import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ROOT, WEFT_FLANNELD } from "../helpers/executables.js";
import { all, command, prerequisite, rootUser } from "../helpers/prerequisites.js";

// The agent's scale benchmark (make bench) at tiny sizes, so that it keeps working: it must converge,
// churn and end with the kernel holding exactly the leases' entries. Not a timed test: no figure is
// judged, only the counts and the proof. The agent is the one under test (WEFT_FLANNELD).

const needs = all(
  rootUser(),
  command("etcd", "etcd-server"),
  command("etcdctl", "etcd-client"),
  prerequisite(`${WEFT_FLANNELD} (make build)`, existsSync(WEFT_FLANNELD)),
);

describe.skipIf(needs.skip)(needs.title("the agent's scale benchmark, tiny"), () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("writes 20 then 40 leases, churns 10 a second for 2 s, and a joining node converges: every count equals the leases'", async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-bench-agent-test-"));
    const json = join(dir, "result.json");
    const args = [
      "scripts/bench-agent.mjs",
      "--sizes",
      "20,40",
      "--churn-rate",
      "10",
      "--churn-seconds",
      "2",
      "--idle-seconds",
      "1",
      "--timeout-seconds",
      "20",
      "--json",
      json,
      "--flanneld",
      WEFT_FLANNELD,
    ];
    const output = await new Promise<string>((done, fail) =>
      execFile(process.execPath, args, { cwd: ROOT, timeout: 150_000, killSignal: "SIGTERM" }, (err, stdout, stderr) =>
        err ? fail(new Error(`${err.message}\n${stdout}\n${stderr}`)) : done(stdout),
      ),
    );
    expect(output).toContain("| 20 -> 40 leases |");
    const r = JSON.parse(readFileSync(json, "utf8"));

    const [first, second] = r.phases;
    expect(first.kernelEntries).toEqual({ routes: 20, neighbours: 20, fdb: 20 });
    expect(second.kernelEntries).toEqual({ routes: 40, neighbours: 40, fdb: 40 });
    for (const phase of [first, second]) {
      expect(phase.missing).toEqual([]);
      expect(phase.unexpected).toEqual([]);
      expect(phase.leaseEvents).toBe(20);
      expect(phase.kernelConvergedMs).toBeGreaterThan(0);
    }

    expect(r.churn.changes).toBe(20);
    expect(r.churn.failedWrites).toBe(0);
    expect(r.churn.unapplied).toBe(0);
    expect(r.churn.kernelLagMs.n).toBe(20);
    expect(r.churn.leaseEvents).toBe(20);
    for (const kind of ["delete", "recreate", "public-ip", "vtep-mac"]) expect(r.churn.kernelLagByKindMs[kind].n).toBeGreaterThan(0);

    expect(r.final).toMatchObject({ leases: 40, counts: { routes: 40, neighbours: 40, fdb: 40 }, agentPeers: 40, missing: [], unexpected: [] });
    expect(r.final.etcd).toEqual({ keys: 41, differing: [] });
    // The joining node also programs the first agent's lease.
    expect(r.join).toMatchObject({ leases: 41, kernelEntries: { routes: 41, neighbours: 41, fdb: 41 }, missing: [], unexpected: [] });
    expect(r.agentExitCode).toBe(0);
  }, 180_000);
});
