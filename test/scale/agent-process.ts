import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startInNetns, type NetnsProcess } from "../helpers/netns-process.js";

/**
 * The node agent under test, as a process in its node's namespace, and what the benchmark reads of
 * it: its /metrics over the underlay, and its CPU time and memory from /proc.
 */

export interface AgentOptions {
  /** The agent's executable, run as it is (a script form finds this process's Node.js first on PATH). */
  flanneld: string;
  netns: string;
  args: string[];
  logFile: string;
  /** Extra environment (NODE_OPTIONS for a CPU profile). */
  env?: Record<string, string>;
}

export interface ProcessSample {
  /** user + system CPU time, seconds. */
  cpuSeconds: number;
  rssBytes: number;
  /** The peak resident size so far (VmHWM). */
  peakRssBytes: number;
}

const CLOCK_TICKS = 100;

/** CPU time and memory of a process, from /proc/<pid>/stat and status. */
export function sampleProcess(pid: number): ProcessSample {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command's closing parenthesis: state is field 3, utime 14 and stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { cpuSeconds, rssBytes: kib("VmRSS"), peakRssBytes: kib("VmHWM") };
}

/** Prometheus text format: every `name value` line (no labels in the agent's). */
export function parseMetrics(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*) (\S+)$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

export class AgentProcess {
  private process: NetnsProcess | undefined;

  constructor(
    private readonly options: AgentOptions,
    /** http://<address>:<port> of its healthz server. */
    readonly url: string,
  ) {}

  get pid(): number {
    const pid = this.process?.pid;
    if (pid === undefined) throw new Error("agent: not started");
    return pid;
  }

  get running(): boolean {
    return this.process?.running ?? false;
  }

  start(): void {
    const { netns, flanneld, args, logFile, env } = this.options;
    // `#!/usr/bin/env node` execs node in place: the pid sampled is still the agent's.
    const path = `${dirname(process.execPath)}:${process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin"}`;
    this.process = startInNetns({ netns, argv: [flanneld, ...args], logPath: logFile, env: { PATH: path, ...env }, name: `agent in ${netns}` });
  }

  async metrics(): Promise<Record<string, number>> {
    const response = await fetch(`${this.url}/metrics`, { signal: AbortSignal.timeout(5000) });
    if (!response.ok) throw new Error(`agent: /metrics answered ${response.status}`);
    return parseMetrics(await response.text());
  }

  /** Resolves once /readyz answers 200; throws if the agent exits first or `timeoutMs` passes. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "no answer";
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`agent: exited before it was ready:\n${this.logTail(30)}`);
      try {
        const response = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2000) });
        if (response.status === 200) return;
        last = `${response.status} ${(await response.text()).trim()}`;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(100);
    }
    throw new Error(`agent: not ready within ${timeoutMs} ms (/readyz: ${last}):\n${this.logTail(30)}`);
  }

  /** SIGTERM, then SIGKILL to its process group if it has not exited within `timeoutMs`; the exit code (null when killed). */
  async stop(timeoutMs = 10_000): Promise<number | null> {
    if (!this.process) return null;
    return (await this.process.stop(timeoutMs)) ? this.process.exitCode : null;
  }

  kill(): void {
    this.process?.signal("SIGKILL");
  }

  logTail(lines: number): string {
    try {
      return readFileSync(this.options.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }
}
