// The node agent at scale: `make bench` (scripts/bench-agent.mjs bundles and runs this file; root).
//
//   node build/bench-agent/agent-scale-<pid>.cjs [--sizes 1000,5000] [--churn-rate 100] [--churn-seconds 60]
//     [--idle-seconds 15] [--concurrency 32] [--json build/bench-agent.json] [--flanneld bin/flanneld]
//     [--cpu-prof DIR] [--route-resync S] [--logs DIR] [--changes CSV] [--no-join]
//     [--timeout-seconds 300]
//
// A one-member etcd lab and one node namespace running the agent (--flanneld, executed as it is;
// default bin/flanneld) with vxlan, then, from a second node namespace on the same underlay (as other
// nodes write), leases of fake peers: the first size written at once, then as many more as make the
// next size (the agent keeps running: each step is an increment), each time until the kernel holds
// every peer's route, neighbour and fdb entry; a quiet spell; then lease churn at a fixed rate.
// Measured: convergence, lag of each change until the kernel has it (ip/bridge monitors in the
// agent's namespace), etcd requests per lease event (the agent's /metrics), the agent's CPU time and
// memory (/proc), and at the end the kernel's tables, dumped, compared entry by entry with the leases
// in etcd. Everything it makes is removed at the end, also on failure or Ctrl-C.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { formatLeaseValue, parseLeaseValue, parseVxlanBackendData, subnetsKeyPrefix, vxlanBackendData } from "../../agent/lease.js";
import { EtcdClient } from "../../lib/etcd/client.js";
import { createEtcdLab, type EtcdLab } from "../helpers/etcd-lab.js";
import { AgentProcess, sampleProcess, type ProcessSample } from "./agent-process.js";
import { compareTables, counts, dumpTables, KernelMirror, wantedTables, type TableCounts } from "./kernel-mirror.js";
import { churn, LeaseWriter, NETWORK, type ChangeKind, type LeaseChange, type PeerState } from "./lease-writer.js";

const ETCD_PREFIX = "/coreos.com/network";
const DEVICE = "flannel.1";
const HEALTHZ_PORT = 9400;
const METRICS_POLL_MS = 20;

export interface ScaleOptions {
  sizes: number[];
  churnRate: number;
  churnSeconds: number;
  idleSeconds: number;
  concurrency: number;
  flanneld: string;
  cpuProfDir?: string;
  routeResync?: number;
  /** Where the agents' logs are copied to at the end. */
  logsDir?: string;
  /** A CSV of every churn change's times. */
  changesFile?: string;
  /** A second agent joins the cluster at the end (default true). */
  join: boolean;
  /** The bound of each wait for an agent: ready, converged, churn drained (default 300). */
  timeoutSeconds: number;
}

interface InnerConfig extends ScaleOptions {
  endpoints: string[];
  agentNetns: string;
  agentAddress: string;
  joinerNetns: string;
  joinerAddress: string;
  etcdPid: number;
  work: string;
  resultFile: string;
}

export interface Stats {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

function stats(values: number[]): Stats {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const at = (q: number) => (sorted.length ? round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!) : NaN);
  return { n: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: round(sorted[sorted.length - 1] ?? NaN) };
}

function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

interface Usage {
  /** The agent's CPU seconds over the phase, and as a share of one core. */
  agentCpuSeconds: number;
  agentCpuPercent: number;
  agentRssMiB: number;
  agentPeakRssMiB: number;
  etcdCpuSeconds: number;
  /** This benchmark's own process (writer, monitors' parsing): CPU that competed with the agent's. */
  benchCpuSeconds: number;
  etcdRequests: number;
  leaseEvents: number;
  kernelChanges: number;
  kernelNotifications: number;
  resyncs: number;
  etcdRequestsPerEvent: number;
}

interface Snapshot {
  atMs: number;
  agent: ProcessSample;
  etcd: ProcessSample;
  bench: number;
  /** The kernel notifications the mirror has seen. */
  notifications: number;
  metrics: Record<string, number>;
}

const MiB = 1024 * 1024;

interface NodeUnderTest {
  label: string;
  netns: string;
  agent: AgentProcess;
  mirror: KernelMirror;
}

class Inner {
  readonly client: EtcdClient;
  readonly node: NodeUnderTest;
  readonly writer: LeaseWriter;
  readonly applied = new Map<LeaseChange, Promise<number>>();
  readonly appliedMs = new Map<LeaseChange, number>();
  readonly busy = new Set<number>();
  /** Told of each change too, before it is sent. */
  onChange: ((change: LeaseChange) => void) | undefined;
  ownSubnet = "";
  private readonly started: NodeUnderTest[] = [];
  /** The bound of every wait for the agent (ready, converged, drained). */
  readonly timeoutMs: number;

  constructor(readonly config: InnerConfig) {
    this.client = new EtcdClient({ endpoints: config.endpoints, timeoutMs: 15_000 });
    this.timeoutMs = config.timeoutSeconds * 1000;
    this.node = this.nodeUnderTest("agent", config.agentNetns, config.agentAddress);
    this.writer = new LeaseWriter(this.client, ETCD_PREFIX, (change) => {
      this.busy.add(change.peer);
      this.onChange?.(change);
      const applied = this.node.mirror.want(change.before, change.after).then((atMs) => {
        this.appliedMs.set(change, atMs);
        this.busy.delete(change.peer);
        return atMs;
      });
      this.applied.set(change, applied);
    });
  }

  private nodeUnderTest(label: string, netns: string, address: string): NodeUnderTest {
    const c = this.config;
    const args = [
      `--etcd-endpoints=${c.endpoints.join(",")}`,
      `--etcd-prefix=${ETCD_PREFIX}`,
      "--iface=eth0",
      `--subnet-file=${join(c.work, `${label}-subnet.env`)}`,
      `--healthz-ip=${address}`,
      `--healthz-port=${HEALTHZ_PORT}`,
      ...(c.routeResync !== undefined ? [`--route-resync=${c.routeResync}`] : []),
    ];
    const env: Record<string, string> = {};
    if (c.cpuProfDir) env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${c.cpuProfDir}`;
    const agent = new AgentProcess(
      { flanneld: c.flanneld, netns, args, logFile: join(c.work, `${label}.log`), env },
      `http://${address}:${HEALTHZ_PORT}`,
    );
    return { label, netns, agent, mirror: undefined as unknown as KernelMirror };
  }

  /** Its kernel mirror first (so no change is missed), then the agent. */
  private async startNode(node: NodeUnderTest): Promise<void> {
    node.mirror = await KernelMirror.start(node.netns, DEVICE);
    this.started.push(node);
    node.agent.start();
  }

  /** Kills every agent and monitor this process started. */
  killAll(): void {
    for (const node of this.started) {
      node.agent.kill();
      node.mirror.stop();
    }
  }

  async snapshot(node: NodeUnderTest = this.node): Promise<Snapshot> {
    const metrics = await node.agent.metrics();
    const usage = process.cpuUsage();
    return {
      atMs: performance.now(),
      agent: sampleProcess(node.agent.pid),
      etcd: sampleProcess(this.config.etcdPid),
      bench: (usage.user + usage.system) / 1e6,
      notifications: node.mirror.notifications,
      metrics,
    };
  }

  static usage(a: Snapshot, b: Snapshot): Usage {
    const delta = (name: string) => (b.metrics[name] ?? NaN) - (a.metrics[name] ?? NaN);
    const seconds = (b.atMs - a.atMs) / 1000;
    const agentCpu = b.agent.cpuSeconds - a.agent.cpuSeconds;
    return {
      agentCpuSeconds: round(agentCpu, 2),
      agentCpuPercent: round((100 * agentCpu) / seconds),
      agentRssMiB: round(b.agent.rssBytes / MiB),
      agentPeakRssMiB: round(b.agent.peakRssBytes / MiB),
      etcdCpuSeconds: round(b.etcd.cpuSeconds - a.etcd.cpuSeconds, 2),
      benchCpuSeconds: round(b.bench - a.bench, 2),
      etcdRequests: delta("weft_agent_etcd_requests_total"),
      leaseEvents: delta("weft_agent_lease_events_total"),
      kernelChanges: delta("weft_agent_kernel_changes_total"),
      kernelNotifications: b.notifications - a.notifications,
      resyncs: delta("weft_agent_resyncs_total"),
      etcdRequestsPerEvent: round(delta("weft_agent_etcd_requests_total") / delta("weft_agent_lease_events_total"), 3),
    };
  }

  /** Until the mirror holds what the leases want; a dump replaces the mirror when a monitor lost notifications. */
  async converge(what: string, node: NodeUnderTest = this.node): Promise<number> {
    const deadline = performance.now() + this.timeoutMs;
    let errorsSeen = 0;
    for (;;) {
      const done = await Promise.race([node.mirror.converged(), sleep(1000, undefined, { ref: false }).then(() => undefined)]);
      if (done !== undefined) return done;
      if (!node.agent.running) throw new Error(`${what}: the agent exited:\n${node.agent.logTail(30)}`);
      if (node.mirror.monitorErrors.length > errorsSeen) {
        errorsSeen = node.mirror.monitorErrors.length;
        await node.mirror.resync();
      }
      if (performance.now() > deadline)
        throw new Error(
          `${what}: the kernel still differs from the leases in ${node.mirror.differences} entries after ${this.config.timeoutSeconds} s`,
        );
    }
  }

  /** Until the agent's /metrics say it has applied every event up to `revision` and programs `peers` peers. */
  async metricsCaughtUp(revision: number, peers: number, node: NodeUnderTest = this.node): Promise<number> {
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      const m = await node.agent.metrics();
      if ((m.weft_agent_watch_revision ?? 0) >= revision && m.weft_agent_peers === peers) return performance.now();
      if (performance.now() > deadline)
        throw new Error(`the agent's metrics never reached revision ${revision} with ${peers} peers (${JSON.stringify(m)})`);
      await sleep(METRICS_POLL_MS);
    }
  }

  /** The kernel's tables, dumped, against the leases: exact, entry by entry. */
  async verify(
    node: NodeUnderTest = this.node,
    peers: PeerState[] = this.writer.present(),
  ): Promise<{ counts: TableCounts; leases: number; missing: string[]; unexpected: string[] }> {
    const tables = await dumpTables(node.netns, DEVICE);
    const difference = compareTables(tables, wantedTables(peers));
    return { counts: counts(tables), leases: peers.length, missing: difference.missing.slice(0, 20), unexpected: difference.unexpected.slice(0, 20) };
  }

  /** etcd's leases (all but the agent's own) against the writer's: the writer's view is the one the kernel is judged by. */
  async verifyEtcd(): Promise<{ keys: number; differing: string[] }> {
    const { kvs } = await this.client.range(subnetsKeyPrefix(ETCD_PREFIX), { prefix: true });
    const theirs = new Map(kvs.filter((kv) => !kv.key.endsWith(`/${this.ownSubnet.replace("/", "-")}`)).map((kv) => [kv.key, kv.value]));
    const differing: string[] = [];
    for (const peer of this.writer.peers) {
      const want = peer.present
        ? formatLeaseValue({
            publicIP: peer.publicIP,
            publicIPv6: null,
            backendType: "vxlan",
            backendData: vxlanBackendData({ vni: 1, vtepMAC: peer.vtepMAC }),
          })
        : undefined;
      if (theirs.get(peer.key) !== want) differing.push(`${peer.key}: etcd ${theirs.get(peer.key) ?? "(none)"}, writer ${want ?? "(none)"}`);
      theirs.delete(peer.key);
    }
    for (const key of theirs.keys()) differing.push(`${key}: in etcd, not written by the benchmark`);
    return { keys: kvs.length, differing: differing.slice(0, 20) };
  }

  /** The agent under test's own lease, read back from etcd, as the entries another node makes of it. */
  async ownLease(): Promise<PeerState> {
    const key = `${subnetsKeyPrefix(ETCD_PREFIX)}${this.ownSubnet.replace("/", "-")}`;
    const { kvs } = await this.client.range(key);
    if (!kvs[0]) throw new Error(`the agent's own lease ${key} is not in etcd`);
    const attrs = parseLeaseValue(kvs[0].value, key);
    const { vtepMAC } = parseVxlanBackendData(attrs.backendData, key);
    return { subnet: this.ownSubnet, gateway: this.ownSubnet.split("/")[0]!, publicIP: attrs.publicIP, vtepMAC };
  }

  /**
   * A node joining the cluster as it now is: a second agent started in a fresh namespace, timed until
   * ready and until its kernel holds every lease's entries (the first agent's included).
   */
  async joinPhase(peers: PeerState[]): Promise<unknown> {
    const c = this.config;
    const node = this.nodeUnderTest("joiner", c.joinerNetns, c.joinerAddress);
    node.mirror = await KernelMirror.start(node.netns, DEVICE);
    for (const p of peers) void node.mirror.want(undefined, p);
    this.started.push(node);
    const startCpu = process.cpuUsage();
    const etcdCpu = sampleProcess(c.etcdPid).cpuSeconds;
    const started = performance.now();
    node.agent.start();
    await node.agent.waitReady(this.timeoutMs);
    const readyMs = performance.now();
    const kernelMs = await this.converge("the joining node", node);
    const metricsMs = await this.metricsCaughtUp(0, peers.length, node);
    const m = await node.agent.metrics();
    const sample = sampleProcess(node.agent.pid);
    const usage = process.cpuUsage(startCpu);
    const verified = await this.verify(node, peers);
    const phase = {
      name: `a node joins ${peers.length} leases`,
      readyMs: round(readyMs - started),
      kernelConvergedMs: round(kernelMs - started),
      metricsCaughtUpMs: round(metricsMs - started),
      kernelEntries: verified.counts,
      leases: verified.leases,
      missing: verified.missing,
      unexpected: verified.unexpected,
      agentCpuSeconds: round(sample.cpuSeconds, 2),
      agentCpuPercent: round((100 * sample.cpuSeconds) / ((kernelMs - started) / 1000)),
      agentRssMiB: round(sample.rssBytes / MiB),
      agentPeakRssMiB: round(sample.peakRssBytes / MiB),
      etcdCpuSeconds: round(sampleProcess(c.etcdPid).cpuSeconds - etcdCpu, 2),
      benchCpuSeconds: round((usage.user + usage.system) / 1e6, 2),
      etcdRequests: m.weft_agent_etcd_requests_total,
      leaseEvents: m.weft_agent_lease_events_total,
      kernelChanges: m.weft_agent_kernel_changes_total,
      kernelNotifications: node.mirror.notifications,
      resyncs: m.weft_agent_resyncs_total,
      agentExitCode: await node.agent.stop(),
    };
    node.mirror.stop();
    log(JSON.stringify(phase));
    return phase;
  }

  async run(): Promise<unknown> {
    const c = this.config;
    const result: Record<string, unknown> = {};
    const node = this.node;
    let started = performance.now();
    await this.startNode(node);
    await node.agent.waitReady(this.timeoutMs);
    result.start = { readyMs: round(performance.now() - started) };
    const subnetEnv = readFileSync(join(c.work, "agent-subnet.env"), "utf8");
    this.ownSubnet = /^FLANNEL_SUBNET=(\S+)$/m.exec(subnetEnv)?.[1]?.replace(/\.1\//, ".0/") ?? "";
    log(`agent ready in ${round(performance.now() - started)} ms, its subnet ${this.ownSubnet}`);

    const phases: unknown[] = [];
    result.phases = phases;
    let written = 0;
    for (const size of c.sizes) {
      const before = await this.snapshot();
      started = performance.now();
      const changes = await this.writer.writePeers(written, size, c.concurrency);
      const ackedMs = performance.now();
      if (this.writer.peers.some((p) => p.subnet === this.ownSubnet)) throw new Error(`a fake peer took the agent's own subnet ${this.ownSubnet}`);
      const lastRevision = Math.max(...changes.map((ch) => ch.revision ?? 0));
      const kernelMs = await this.converge(`${size} leases`);
      const metricsMs = await this.metricsCaughtUp(lastRevision, size);
      const after = await this.snapshot();
      const verified = await this.verify();
      const phase = {
        name: `${written} -> ${size} leases`,
        leasesWritten: size - written,
        writeMs: round(ackedMs - started),
        kernelConvergedMs: round(kernelMs - started),
        kernelConvergedAfterLastWriteMs: round(kernelMs - ackedMs),
        metricsCaughtUpMs: round(metricsMs - started),
        kernelEntries: verified.counts,
        leases: verified.leases,
        missing: verified.missing,
        unexpected: verified.unexpected,
        ...Inner.usage(before, after),
      };
      phases.push(phase);
      log(JSON.stringify(phase));
      if (verified.missing.length || verified.unexpected.length)
        throw new Error(`after ${size} leases the kernel differs from them: ${JSON.stringify(verified)}`);
      written = size;
    }

    if (c.idleSeconds > 0) {
      const before = await this.snapshot();
      await sleep(c.idleSeconds * 1000);
      const after = await this.snapshot();
      const idle = { name: `idle ${c.idleSeconds} s at ${written} leases`, seconds: c.idleSeconds, ...Inner.usage(before, after) };
      phases.push(idle);
      log(JSON.stringify(idle));
    }

    if (c.churnSeconds > 0 && c.churnRate > 0) result.churn = await this.churnPhase();
    const verified = await this.verify();
    const etcd = await this.verifyEtcd();
    const metrics = await node.agent.metrics();
    result.final = { ...verified, etcd, agentPeers: metrics.weft_agent_peers, monitorErrors: node.mirror.monitorErrors.slice(0, 20) };
    if (verified.missing.length || verified.unexpected.length || etcd.differing.length)
      throw new Error(`after the churn the kernel differs from the leases: ${JSON.stringify(result.final)}`);
    result.agentLogLines = node.agent.logTail(1_000_000).split("\n").length;
    const own = await this.ownLease();
    result.agentExitCode = await node.agent.stop();
    node.mirror.stop();
    if (c.join) result.join = await this.joinPhase([...this.writer.present(), own]);
    this.client.close();
    return result;
  }

  async churnPhase(): Promise<unknown> {
    const c = this.config;
    // The benchmark's own watch: each change's revision (a revoke answers none) and when a watcher
    // could first know of it.
    const queues = new Map<string, LeaseChange[]>();
    const { revision } = await this.client.range(`${ETCD_PREFIX}/config`);
    const watch = this.client.watchPrefix(subnetsKeyPrefix(ETCD_PREFIX), revision + 1, (event) => {
      if (event.type !== "put" && event.type !== "delete") return;
      const change = queues.get(event.kv.key)?.shift();
      if (!change) return;
      change.revision ??= event.kv.modRevision;
      change.watchedMs = performance.now();
    });
    const samples: { atMs: number; revision: number }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        try {
          const m = await this.node.agent.metrics();
          samples.push({ atMs: performance.now(), revision: m.weft_agent_watch_revision ?? 0 });
        } catch {
          // A slow answer is a gap in the samples, not a failure.
        }
        await sleep(METRICS_POLL_MS);
      }
    })();
    const record = (change: LeaseChange) => {
      let q = queues.get(change.key);
      if (!q) queues.set(change.key, (q = []));
      q.push(change);
    };
    this.onChange = record;
    const firstSeq = this.writer.changes.length;
    const before = await this.snapshot();
    const started = performance.now();
    const outcome = await churn(this.writer, {
      rate: c.churnRate,
      seconds: c.churnSeconds,
      idle: (peer) => !this.busy.has(peer.index),
    });
    const sentMs = performance.now();
    this.onChange = undefined;
    const changes = this.writer.changes.slice(firstSeq);
    const failed = changes.filter((ch) => ch.error);
    const drained = await Promise.race([
      Promise.all(changes.map((ch) => this.applied.get(ch)!)).then(() => true),
      sleep(this.timeoutMs, undefined, { ref: false }).then(() => false),
    ]);
    if (!drained && this.node.mirror.monitorErrors.length) await this.node.mirror.resync();
    const drainedMs = performance.now();
    await sleep(2 * METRICS_POLL_MS + 200);
    polling = false;
    await poller;
    watch.close();
    const after = await this.snapshot();

    const lag = (ch: LeaseChange) => (this.appliedMs.get(ch) ?? NaN) - ch.issuedMs;
    const metricLag = (ch: LeaseChange) => {
      if (ch.revision === undefined) return NaN;
      const s = samples.find((x) => x.revision >= ch.revision! && x.atMs >= ch.issuedMs);
      return s ? s.atMs - ch.issuedMs : NaN;
    };
    const byKind: Record<string, Stats> = {};
    for (const kind of ["delete", "recreate", "public-ip", "vtep-mac"] as ChangeKind[])
      byKind[kind] = stats(changes.filter((ch) => ch.kind === kind).map(lag));
    const unapplied = changes.filter((ch) => !this.appliedMs.has(ch));
    const phase = {
      name: `churn ${c.churnRate}/s for ${c.churnSeconds} s`,
      changes: changes.length,
      sendSeconds: round((sentMs - started) / 1000, 2),
      achievedRate: round(outcome.scheduleSlipMs.length / c.churnSeconds, 1),
      scheduleSlipMs: stats(outcome.scheduleSlipMs),
      skippedBusy: outcome.skipped,
      recreatedAfterWindow: outcome.recreatedAfterWindow,
      failedWrites: failed.length,
      firstFailure: failed[0]?.error,
      kernelLagMs: stats(changes.map(lag)),
      kernelLagByKindMs: byKind,
      metricsWatchRevisionLagMs: stats(changes.map(metricLag)),
      etcdAckMs: stats(changes.map((ch) => (ch.ackedMs ?? NaN) - ch.issuedMs)),
      watchFloorMs: stats(changes.map((ch) => (ch.watchedMs ?? NaN) - ch.issuedMs)),
      // From the bench's own watch getting the event to the kernel holding it: the agent's share of
      // the lag (its watch is told at about the same time, by the same etcd).
      agentShareMs: stats(changes.map((ch) => (this.appliedMs.get(ch) ?? NaN) - (ch.watchedMs ?? NaN))),
      unapplied: unapplied.length,
      unappliedExamples: unapplied.slice(0, 5).map((ch) => ({ kind: ch.kind, key: ch.key, before: ch.before, after: ch.after })),
      drainMs: round(drainedMs - sentMs),
      ...Inner.usage(before, after),
    };
    log(JSON.stringify(phase));
    if (c.changesFile) {
      // Times in ms from the churn's start; the agent's watch_revision samples after, to place its stalls.
      const at = (v: number | undefined) => (v === undefined ? "" : round(v - started, 2));
      const rows = changes.map((ch) =>
        [ch.seq - firstSeq, ch.kind, ch.key, ch.revision ?? "", at(ch.issuedMs), at(ch.ackedMs), at(ch.watchedMs), at(this.appliedMs.get(ch))].join(
          ",",
        ),
      );
      const polled = samples.map((x) => `sample,,,${x.revision},${at(x.atMs)},,,`);
      mkdirSync(dirname(c.changesFile), { recursive: true });
      writeFileSync(c.changesFile, `seq,kind,key,revision,sentMs,etcdAnsweredMs,watchedMs,kernelMs\n${[...rows, ...polled].join("\n")}\n`);
    }
    return phase;
  }
}

function log(line: string): void {
  process.stderr.write(`bench-agent: ${line}\n`);
}

async function inner(configFile: string): Promise<void> {
  const config = JSON.parse(readFileSync(configFile, "utf8")) as InnerConfig;
  const bench = new Inner(config);
  const stop = () => {
    bench.killAll();
    process.exit(130);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  try {
    const result = await bench.run();
    writeFileSync(config.resultFile, JSON.stringify(result, null, 2));
  } finally {
    bench.killAll();
    if (config.logsDir) {
      mkdirSync(config.logsDir, { recursive: true });
      for (const name of ["agent.log", "joiner.log"])
        if (existsSync(join(config.work, name))) copyFileSync(join(config.work, name), join(config.logsDir, name));
    }
  }
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function numberArg(name: string, fallback: number): number {
  const v = arg(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} ${v}: a number is expected`);
  return n;
}

/** Processes still in a namespace (ip netns pids), killed before it is deleted. */
function killProcessesIn(netns: string): void {
  const out = spawnSync("ip", ["netns", "pids", netns], { encoding: "utf8" });
  for (const pid of out.stdout?.split("\n").filter(Boolean) ?? []) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
}

async function outer(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error("bench-agent: needs root (network namespaces)");
    process.exit(2);
  }
  const root = resolve(dirname(process.argv[1]!), "../..");
  const options: ScaleOptions = {
    sizes: (arg("sizes") ?? "1000,5000").split(",").map(Number),
    churnRate: numberArg("churn-rate", 100),
    churnSeconds: numberArg("churn-seconds", 60),
    idleSeconds: numberArg("idle-seconds", 15),
    concurrency: numberArg("concurrency", 32),
    flanneld: resolve(arg("flanneld") ?? join(root, "bin/flanneld")),
    ...(arg("cpu-prof") ? { cpuProfDir: resolve(arg("cpu-prof")!) } : {}),
    ...(arg("route-resync") ? { routeResync: numberArg("route-resync", 10) } : {}),
    ...(arg("logs") ? { logsDir: resolve(arg("logs")!) } : {}),
    ...(arg("changes") ? { changesFile: resolve(arg("changes")!) } : {}),
    join: !process.argv.includes("--no-join"),
    timeoutSeconds: numberArg("timeout-seconds", 300),
  };
  if (options.sizes.some((s, i) => !Number.isInteger(s) || s < 1 || s <= (options.sizes[i - 1] ?? 0)))
    throw new Error(`--sizes ${arg("sizes")}: increasing whole numbers are expected`);
  const jsonOut = resolve(arg("json") ?? join(root, "build/bench-agent.json"));

  const work = mkdtempSync(join(tmpdir(), "weft-bench-agent-"));
  let lab: EtcdLab | undefined;
  let child: ChildProcess | undefined;
  const namespaces: string[] = [];
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      if (child && child.exitCode === null) child.kill("SIGTERM");
      for (const ns of namespaces) killProcessesIn(ns);
      await lab?.remove().catch((err: unknown) => console.error(`bench-agent: removing the lab: ${(err as Error).message}`));
      rmSync(work, { recursive: true, force: true });
    })());
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, () => {
      console.error(`bench-agent: ${signal}, cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });

  try {
    lab = await createEtcdLab({ members: 1 });
    await lab.waitHealthy(30_000);
    await lab.etcdctl(["put", `${ETCD_PREFIX}/config`, JSON.stringify({ Network: NETWORK, Backend: { Type: "vxlan" } })]);
    const agentNode = lab.addNode("agent");
    const writerNode = lab.addNode("writer");
    const joinerNode = lab.addNode("joiner");
    namespaces.push(agentNode.netns.name, writerNode.netns.name, joinerNode.netns.name);
    if (options.cpuProfDir) mkdirSync(options.cpuProfDir, { recursive: true });
    const config: InnerConfig = {
      ...options,
      endpoints: lab.endpoints,
      agentNetns: agentNode.netns.name,
      agentAddress: agentNode.address,
      joinerNetns: joinerNode.netns.name,
      joinerAddress: joinerNode.address,
      etcdPid: lab.member(0).pid!,
      work,
      resultFile: join(work, "result.json"),
    };
    writeFileSync(join(work, "config.json"), JSON.stringify(config));
    console.log(
      `bench-agent: sizes ${options.sizes.join(", ")}, churn ${options.churnRate}/s for ${options.churnSeconds} s, agent ${options.flanneld}`,
    );
    const started = Date.now();
    const loadBefore = loadavg();
    const spawned = spawn(
      "ip",
      [
        "netns",
        "exec",
        writerNode.netns.name,
        "setpriv",
        "--pdeathsig",
        "KILL",
        process.execPath,
        process.argv[1]!,
        "--inner",
        join(work, "config.json"),
      ],
      { stdio: ["ignore", "inherit", "inherit"] },
    );
    child = spawned;
    const code = await new Promise<number | null>((done) => spawned.once("exit", (c) => done(c)));
    if (code !== 0) throw new Error(`bench-agent: the measuring process failed (exit ${code})`);
    const measured = JSON.parse(readFileSync(config.resultFile, "utf8")) as Measured;
    const results = {
      machine: machine(),
      options: { ...options, network: NETWORK, backend: "vxlan", etcdMembers: 1 },
      wallSeconds: round((Date.now() - started) / 1000),
      // Other work on the machine competes for its cores: the load average before and after the run.
      loadAverage1m: { before: round(loadBefore[0]!, 2), after: round(loadavg()[0]!, 2) },
      ...measured,
    };
    report(results);
    mkdirSync(dirname(jsonOut), { recursive: true });
    writeFileSync(jsonOut, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nwritten to ${jsonOut}`);
    const f = measured.final;
    if (
      f.missing.length ||
      f.unexpected.length ||
      f.etcd.differing.length ||
      measured.churn?.unapplied ||
      measured.join?.missing?.length ||
      measured.join?.unexpected?.length
    )
      throw new Error("bench-agent: the kernel does not hold exactly the leases' entries (see the result)");
  } finally {
    await cleanup();
  }
}

type Phase = Record<string, unknown> &
  Partial<Usage> & {
    name: string;
    writeMs?: number;
    readyMs?: number;
    kernelConvergedMs?: number;
    kernelConvergedAfterLastWriteMs?: number;
    kernelEntries?: TableCounts;
    missing?: string[];
    unexpected?: string[];
  };

interface Measured {
  start: { readyMs: number };
  phases: Phase[];
  churn?: Phase & {
    changes: number;
    unapplied: number;
    kernelLagMs: Stats;
    kernelLagByKindMs: Record<string, Stats>;
    metricsWatchRevisionLagMs: Stats;
    etcdAckMs: Stats;
    watchFloorMs: Stats;
    agentShareMs: Stats;
    scheduleSlipMs: Stats;
  };
  join?: Phase;
  final: {
    counts: TableCounts;
    leases: number;
    missing: string[];
    unexpected: string[];
    etcd: { keys: number; differing: string[] };
    agentPeers: number;
  };
}

function machine() {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  return {
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? "unknown CPU",
    cores: cpus().length,
    node: process.version,
    kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
    etcd: spawnSync("etcd", ["--version"], { encoding: "utf8" }).stdout?.split("\n")[0] ?? "",
  };
}

function report(r: { machine: ReturnType<typeof machine>; wallSeconds: number; loadAverage1m: { before: number; after: number } } & Measured): void {
  const row = (...cells: (string | number | undefined)[]) => console.log(`| ${cells.map((v) => (v === undefined ? "" : String(v))).join(" | ")} |`);
  const entries = (t: TableCounts | undefined) => (t ? `${t.routes}/${t.neighbours}/${t.fdb}` : "");
  const phaseRow = (p: Phase) =>
    row(
      p.name,
      p.writeMs ?? p.readyMs,
      p.kernelConvergedMs,
      p.kernelConvergedAfterLastWriteMs,
      entries(p.kernelEntries),
      `${p.etcdRequests}/${p.leaseEvents}${p.etcdRequestsPerEvent === undefined ? "" : ` = ${p.etcdRequestsPerEvent}`}`,
      `${p.kernelChanges} / ${p.kernelNotifications}`,
      `${p.agentCpuSeconds} (${p.agentCpuPercent}%)`,
      `${p.agentRssMiB} / ${p.agentPeakRssMiB}`,
      `${p.etcdCpuSeconds} / ${p.benchCpuSeconds}`,
    );
  console.log(`\nmachine: ${r.machine.cpu}, ${r.machine.cores} cores, Node.js ${r.machine.node}, kernel ${r.machine.kernel}, ${r.machine.etcd}`);
  console.log(
    `agent ready (empty cluster) in ${r.start.readyMs} ms; whole run ${r.wallSeconds} s; load average (1 min) ${r.loadAverage1m.before} before, ${r.loadAverage1m.after} after\n`,
  );
  row(
    "phase",
    "writes (join: ready) ms",
    "kernel converged ms",
    "after last write ms",
    "route/neigh/fdb",
    "etcd requests / events",
    "kernel changes / notifications",
    "agent CPU s (% of a core)",
    "agent RSS / peak MiB",
    "CPU s etcd / bench",
  );
  row(...Array.from({ length: 10 }, () => "---"));
  for (const p of r.phases) phaseRow(p);
  if (r.churn) phaseRow(r.churn);
  if (r.join) phaseRow(r.join);
  const c = r.churn;
  const s = (x: Stats) => `${x.p50} / ${x.p95} / ${x.p99} / ${x.max} (n ${x.n})`;
  if (c) {
    console.log(
      `\nchurn: ${c.changes} changes sent at ${String(c.achievedRate)}/s; send time past schedule p50/p95/p99/max ms ${s(c.scheduleSlipMs)}`,
    );
    console.log(`  lag, etcd request sent -> the kernel holds the change, p50 / p95 / p99 / max ms: ${s(c.kernelLagMs)}`);
    for (const [kind, st] of Object.entries(c.kernelLagByKindMs)) console.log(`    ${kind}: ${s(st)}`);
    console.log(`  lag, sent -> weft_agent_watch_revision reached it (polled every ${METRICS_POLL_MS} ms): ${s(c.metricsWatchRevisionLagMs)}`);
    console.log(`  floor: sent -> etcd answered: ${s(c.etcdAckMs)}; sent -> the bench's own watch got it: ${s(c.watchFloorMs)}`);
    console.log(`  the agent's share: the bench's watch got it -> the kernel holds it: ${s(c.agentShareMs)}`);
    console.log(
      `  not applied after the drain: ${c.unapplied}; failed writes: ${String(c.failedWrites)}; skipped (peer busy): ${String(c.skippedBusy)}`,
    );
  }
  const f = r.final;
  console.log(
    `\nfinal (dumped with ip -j / bridge -j): ${f.leases} leases; kernel routes ${f.counts.routes}, neighbours ${f.counts.neighbours}, fdb ${f.counts.fdb}; ` +
      `agent peers ${f.agentPeers}; missing ${f.missing.length}, unexpected ${f.unexpected.length}; ` +
      `etcd keys ${f.etcd.keys} (the agent's own included), differing from the writer ${f.etcd.differing.length}`,
  );
  if (r.join)
    console.log(
      `joining node: ${String(r.join.leases)} leases; kernel ${entries(r.join.kernelEntries)}; missing ${r.join.missing?.length}, unexpected ${r.join.unexpected?.length}`,
    );
}

const innerConfig = arg("inner");
// Explicit exits: an HTTP keep-alive socket or a gRPC channel being closed would hold the process a while.
(innerConfig ? inner(innerConfig) : outer()).then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
