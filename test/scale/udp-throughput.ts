// Throughput and latency between pods on two nodes of the agent lab, per backend (udp, vxlan,
// host-gw) in one run: iperf3 TCP for --seconds, ping's round trip, and the agents' CPU (their
// process_cpu_seconds_total across the iperf3 run) per Gbit/s carried. A benchmark, run by
// scripts/bench-udp.mjs, never by the tests: the figures depend on the machine and its load.
//
//   node scripts/bench-udp.mjs [--seconds 10] [--backends udp,vxlan,host-gw] [--json FILE] [--streams 1]
import { execFile, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { createAgentLab, NETWORK, type AgentLab, type Pod } from "../helpers/agent-lab.js";

interface Args {
  seconds: number;
  backends: string[];
  json?: string;
  streams: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { seconds: 10, backends: ["udp", "vxlan", "host-gw"], streams: 1 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split("=", 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i] ?? "";
    if (flag === "--seconds") args.seconds = Number(value());
    else if (flag === "--backends") args.backends = value().split(",");
    else if (flag === "--json") args.json = value();
    else if (flag === "--streams") args.streams = Number(value());
    else throw new Error(`unknown flag ${flag}`);
  }
  return args;
}

function run(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs, killSignal: "SIGKILL", encoding: "utf8", maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${command} ${args.join(" ")}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

interface Result {
  backend: string;
  mtu: number;
  gbits: number;
  retransmits: number;
  rttMs: number;
  /** Both agents' CPU seconds per second of the iperf3 run. */
  agentCpu: number;
  agentCpuPerGbit: number;
  agentRssMb: number;
  /** Packets the udp carriers dropped (weft_agent_udp_dropped_total) and the kernel dropped at a full UDP socket buffer, both nodes. */
  carrierDrops: number;
  socketBufferDrops: number;
  /** Packets flannel0's queue dropped while the carrier was busy (the kernel's bound on what waits for it). */
  tunQueueDrops: number;
  load: number;
}

async function sample(lab: AgentLab): Promise<{ cpu: number; rss: number; drops: number; bufferDrops: number; tunDrops: number }> {
  let cpu = 0;
  let rss = 0;
  let drops = 0;
  let bufferDrops = 0;
  let tunDrops = 0;
  for (const node of lab.nodes) {
    const m = await node.metrics();
    cpu += m.get("process_cpu_seconds_total") ?? 0;
    rss = Math.max(rss, m.get("process_resident_memory_bytes") ?? 0);
    for (const [name, value] of m) if (name.startsWith("weft_agent_udp_dropped_total")) drops += value;
    // -s: nstat's history file is shared by every namespace; it is left alone.
    const nstat = await run("ip", ["netns", "exec", node.netns.name, "nstat", "-asz", "UdpRcvbufErrors"], 5000);
    bufferDrops += Number(/UdpRcvbufErrors\s+(\d+)/.exec(nstat)?.[1] ?? 0);
    if (node.hasLink("flannel0")) {
      const [link] = node.netns.ipJson<{ stats64: { tx: { dropped: number } } }[]>("-s", "link", "show", "flannel0");
      tunDrops += link?.stats64.tx.dropped ?? 0;
    }
  }
  return { cpu, rss, drops, bufferDrops, tunDrops };
}

async function measure(backend: string, args: Args): Promise<Result> {
  const lab = await createAgentLab({ nodes: 2, config: JSON.stringify({ Network: NETWORK, Backend: { Type: backend } }) });
  try {
    const a: Pod = await lab.addPod(lab.node(0), "client");
    const b: Pod = await lab.addPod(lab.node(1), "server");
    const mtu = Number(lab.node(0).subnetEnv()?.FLANNEL_MTU);
    const ping = await run("ip", ["netns", "exec", a.netns.name, "ping", "-n", "-q", "-c", "50", "-i", "0.02", b.ip], 30_000);
    const rttMs = Number(/= [\d.]+\/([\d.]+)\//.exec(ping)?.[1] ?? Number.NaN);
    const server = spawn("ip", ["netns", "exec", b.netns.name, "setpriv", "--pdeathsig", "KILL", "iperf3", "-s", "-1", "-B", b.ip], {
      stdio: "ignore",
    });
    try {
      await sleep(500);
      const before = await sample(lab);
      const started = process.hrtime.bigint();
      const out = await run(
        "ip",
        ["netns", "exec", a.netns.name, "iperf3", "-c", b.ip, "-t", String(args.seconds), "-P", String(args.streams), "-J"],
        (args.seconds + 30) * 1000,
      );
      const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
      const after = await sample(lab);
      const report = JSON.parse(out) as { end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } } };
      const gbits = report.end.sum_received.bits_per_second / 1e9;
      const agentCpu = (after.cpu - before.cpu) / elapsed;
      return {
        backend,
        mtu,
        gbits,
        retransmits: report.end.sum_sent.retransmits ?? 0,
        rttMs,
        agentCpu,
        agentCpuPerGbit: gbits > 0 ? agentCpu / gbits : Number.NaN,
        agentRssMb: after.rss / 1e6,
        carrierDrops: after.drops - before.drops,
        socketBufferDrops: after.bufferDrops - before.bufferDrops,
        tunQueueDrops: after.tunDrops - before.tunDrops,
        load: loadavg()[0]!,
      };
    } finally {
      server.kill("SIGKILL");
    }
  } finally {
    await lab.remove();
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const results: Result[] = [];
  for (const backend of args.backends) {
    process.stderr.write(`bench-udp: ${backend}: two nodes, iperf3 for ${args.seconds} s ...\n`);
    results.push(await measure(backend, args));
  }
  const lines = [
    "| backend | MTU | TCP throughput (Gbit/s) | retransmits | ping RTT (ms) | agents' CPU (cores) | agents' CPU per Gbit/s | agent RSS (MB) | carrier drops | socket buffer drops | flannel0 queue drops | load (1 min) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...results.map(
      (r) =>
        `| ${r.backend} | ${r.mtu} | ${r.gbits.toFixed(2)} | ${r.retransmits} | ${r.rttMs.toFixed(3)} | ${r.agentCpu.toFixed(2)} | ${r.agentCpuPerGbit.toFixed(2)} | ${r.agentRssMb.toFixed(0)} | ${r.carrierDrops} | ${r.socketBufferDrops} | ${r.tunQueueDrops} | ${r.load.toFixed(2)} |`,
    ),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(results, null, 2)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench-udp: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
