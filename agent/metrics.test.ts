import { describe, expect, it } from "vitest";
import { AgentMetrics } from "./metrics.js";

/** name -> [type, value] from Prometheus text, every sample checked to have its HELP and TYPE first. */
function parse(text: string): Map<string, { type: string; value: number; help: string }> {
  const out = new Map<string, { type: string; value: number; help: string }>();
  const lines = text.split("\n");
  expect(lines.at(-1)).toBe("");
  for (let i = 0; i < lines.length - 1; i += 3) {
    const help = /^# HELP (\w+) (.+)$/.exec(lines[i]!);
    const type = /^# TYPE (\w+) (counter|gauge)$/.exec(lines[i + 1]!);
    const sample = /^(\w+) (-?[\d.e+]+)$/.exec(lines[i + 2]!);
    expect([help?.[1], type?.[1], sample?.[1]], lines.slice(i, i + 3).join("\n")).toEqual([sample?.[1], sample?.[1], sample?.[1]]);
    out.set(sample![1]!, { type: type![2]!, value: Number(sample![2]), help: help![2]! });
  }
  return out;
}

describe("the agent's /metrics text", () => {
  it("gives every metric a HELP, a TYPE and its value, counters ending in _total", () => {
    const m = new AgentMetrics();
    Object.assign(m, {
      etcdRequests: 12,
      leaseEvents: 3,
      peers: 2,
      kernelChanges: 9,
      resyncs: 4,
      resyncRepairs: 1,
      lastEventAppliedSeconds: 1764849600.25,
      watchRevision: 77,
      etcdReachable: 0,
    });
    const metrics = parse(m.format());
    const values = Object.fromEntries([...metrics].map(([name, { type, value }]) => [name, [type, value]]));
    expect(values).toMatchObject({
      weft_agent_etcd_requests_total: ["counter", 12],
      weft_agent_lease_events_total: ["counter", 3],
      weft_agent_peers: ["gauge", 2],
      weft_agent_kernel_changes_total: ["counter", 9],
      weft_agent_resyncs_total: ["counter", 4],
      weft_agent_resync_repairs_total: ["counter", 1],
      weft_agent_last_event_applied_seconds: ["gauge", 1764849600.25],
      weft_agent_watch_revision: ["gauge", 77],
      weft_agent_etcd_reachable: ["gauge", 0],
    });
    for (const [name, { type }] of metrics) expect(name.endsWith("_total"), name).toBe(type === "counter");
  });

  it("reads the process's memory, CPU time and open descriptors when asked", () => {
    const metrics = parse(new AgentMetrics().format());
    const rss = metrics.get("process_resident_memory_bytes")!;
    expect(rss.type).toBe("gauge");
    expect(rss.value).toBeGreaterThan(10e6);
    expect(Math.abs(rss.value - process.memoryUsage.rss())).toBeLessThan(50e6);
    const cpu = metrics.get("process_cpu_seconds_total")!;
    expect(cpu.type).toBe("counter");
    expect(cpu.value).toBeGreaterThan(0);
    expect(cpu.value).toBeLessThanOrEqual((process.cpuUsage().user + process.cpuUsage().system) / 1e6);
    const fds = metrics.get("process_open_fds")!;
    expect(fds.type).toBe("gauge");
    expect(fds.value).toBeGreaterThan(2);
  });

  it("starts every agent figure at zero but etcd reachable, and appends further sections after", () => {
    const m = new AgentMetrics();
    m.sections.push(() => "# HELP extra_total x\n# TYPE extra_total counter\nextra_total 5\n");
    const text = m.format();
    expect(text.endsWith("extra_total 5\n")).toBe(true);
    const metrics = parse(text);
    for (const name of ["weft_agent_etcd_requests_total", "weft_agent_peers", "weft_agent_watch_revision"]) expect(metrics.get(name)!.value).toBe(0);
    expect(metrics.get("weft_agent_etcd_reachable")!.value).toBe(1);
    expect(metrics.get("extra_total")!.value).toBe(5);
  });
});
