import { execFile, spawn, type ChildProcess } from "node:child_process";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import type { PeerState } from "./lease-writer.js";

/**
 * What the kernel of the node under test holds on its VTEP, watched as it changes: ip(8) and bridge(8)
 * monitors in the node's namespace report every route, neighbour and fdb change the agent makes, each
 * timed on arrival here, and a mirror of the three tables follows them. The benchmark says what it
 * wants the tables to hold after each lease change; the mirror tells when they first do (the change
 * applied) and when every difference is gone (converged). Dumps (ip -j, bridge -j) are the proof: the
 * final comparison with the leases is made on them, not on the mirror.
 */

const run = promisify(execFile);

/** One table's entries: routes dst -> gateway, neighbours address -> MAC, fdb MAC -> destinations. */
export interface KernelTables {
  routes: Map<string, string>;
  neighbours: Map<string, string>;
  fdb: Map<string, string[]>;
}

export interface TableCounts {
  routes: number;
  neighbours: number;
  fdb: number;
}

async function ipJson(netns: string, command: string, args: string[]): Promise<unknown[]> {
  const { stdout } = await run(command, ["-n", netns, "-j", ...args], { maxBuffer: 256 * 1024 * 1024, timeout: 30_000 });
  return JSON.parse(stdout.trim() || "[]") as unknown[];
}

/** The VTEP's routes, neighbours and fdb entries now, as ip(8) and bridge(8) dump them. */
export async function dumpTables(netns: string, device: string): Promise<KernelTables> {
  const [routes, neighbours, fdb] = await Promise.all([
    ipJson(netns, "ip", ["-4", "route", "show", "dev", device]) as Promise<{ dst: string; gateway?: string; flags?: string[] }[]>,
    ipJson(netns, "ip", ["-4", "neigh", "show", "dev", device]) as Promise<{ dst: string; lladdr?: string; state?: string[] }[]>,
    ipJson(netns, "bridge", ["fdb", "show", "dev", device]) as Promise<{ mac: string; dst?: string }[]>,
  ]);
  const tables: KernelTables = { routes: new Map(), neighbours: new Map(), fdb: new Map() };
  for (const r of routes)
    tables.routes.set(r.dst.includes("/") ? r.dst : `${r.dst}/32`, `${r.gateway ?? "-"}${r.flags?.includes("onlink") ? " onlink" : ""}`);
  for (const n of neighbours)
    tables.neighbours.set(n.dst, `${n.lladdr ?? "-"}${n.state?.includes("PERMANENT") ? "" : ` ${(n.state ?? []).join(",")}`}`);
  for (const f of fdb) if (f.dst) tables.fdb.set(f.mac, [...(tables.fdb.get(f.mac) ?? []), f.dst]);
  return tables;
}

export function counts(tables: KernelTables): TableCounts {
  return { routes: tables.routes.size, neighbours: tables.neighbours.size, fdb: [...tables.fdb.values()].reduce((n, d) => n + d.length, 0) };
}

/** The tables the agent must make of these peers' leases: onlink routes, permanent neighbours, one fdb destination per MAC. */
export function wantedTables(peers: readonly PeerState[]): KernelTables {
  const tables: KernelTables = { routes: new Map(), neighbours: new Map(), fdb: new Map() };
  for (const p of peers) {
    tables.routes.set(p.subnet, `${p.gateway} onlink`);
    tables.neighbours.set(p.gateway, p.vtepMAC);
    tables.fdb.set(p.vtepMAC, [p.publicIP]);
  }
  return tables;
}

export interface TableDifference {
  missing: string[];
  unexpected: string[];
}

function lines(tables: KernelTables): Set<string> {
  const out = new Set<string>();
  for (const [dst, via] of tables.routes) out.add(`route ${dst} via ${via}`);
  for (const [ip, mac] of tables.neighbours) out.add(`neigh ${ip} lladdr ${mac}`);
  for (const [mac, dsts] of tables.fdb) for (const dst of dsts) out.add(`fdb ${mac} dst ${dst}`);
  return out;
}

/** Entry by entry: what the kernel lacks, and what it has that no lease asks for (or differently). */
export function compareTables(kernel: KernelTables, wanted: KernelTables): TableDifference {
  const have = lines(kernel);
  const want = lines(wanted);
  return { missing: [...want].filter((l) => !have.has(l)), unexpected: [...have].filter((l) => !want.has(l)) };
}

interface Waiter {
  keys: string[];
  resolve: (atMs: number) => void;
}

const ADDRESS = String.raw`\d+\.\d+\.\d+\.\d+`;

/** The mirror of one VTEP's tables, kept by monitors in its namespace. */
export class KernelMirror {
  private readonly actual = new Map<string, string>();
  private readonly wanted = new Map<string, string>();
  private readonly mismatched = new Set<string>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private convergedWaiters: ((atMs: number) => void)[] = [];
  private readonly monitors: ChildProcess[] = [];
  private readonly routeLine: RegExp;
  private readonly neighLine: RegExp;
  private readonly fdbLine: RegExp;
  private probeSeen = { route: false, fdb: false };
  /** Monitor lines on the device, and the time of the last. */
  notifications = 0;
  lastNotificationMs = 0;
  /** What a monitor said on stderr (ENOBUFS means notifications were lost: resync() from a dump). */
  readonly monitorErrors: string[] = [];

  private constructor(
    private readonly netns: string,
    private readonly device: string,
  ) {
    const dev = device.replace(/\./g, "\\.");
    this.routeLine = new RegExp(`^(Deleted )?(${ADDRESS}/\\d+) via (${ADDRESS}) dev ${dev}( .*)?$`);
    this.neighLine = new RegExp(`^(Deleted )?(${ADDRESS}) dev ${dev} (?:lladdr (\\S+) )?(.*)$`);
    this.fdbLine = new RegExp(`^(Deleted )?([0-9a-f:]{17}) dev ${dev} (?:.* )?dst (\\S+)`);
  }

  /**
   * Starts the monitors and returns once both report a probe device's route and fdb entry (made and
   * deleted here), so no later change can be missed for a monitor still starting.
   */
  static async start(netns: string, device: string, timeoutMs = 10_000): Promise<KernelMirror> {
    const mirror = new KernelMirror(netns, device);
    try {
      mirror.spawnMonitor(["ip", "-4", "monitor", "route", "neigh"]);
      mirror.spawnMonitor(["bridge", "monitor", "fdb"]);
      await mirror.probe(timeoutMs);
    } catch (err) {
      mirror.stop();
      throw err;
    }
    return mirror;
  }

  private spawnMonitor(argv: string[]): void {
    const child = spawn("ip", ["netns", "exec", this.netns, "setpriv", "--pdeathsig", "KILL", ...argv], { stdio: ["ignore", "pipe", "pipe"] });
    this.monitors.push(child);
    createInterface({ input: child.stdout }).on("line", (line) => this.onLine(line, performance.now()));
    createInterface({ input: child.stderr }).on("line", (line) => this.monitorErrors.push(`${argv.join(" ")}: ${line}`));
  }

  private async probe(timeoutMs: number): Promise<void> {
    const ns = ["-n", this.netns];
    const probe = "scaleprobe0";
    await run("ip", [...ns, "link", "add", probe, "type", "vxlan", "id", "4242", "dstport", "4790", "nolearning"]);
    try {
      await run("ip", [...ns, "link", "set", probe, "up"]);
      await run("ip", [...ns, "addr", "add", "192.0.2.1/32", "dev", probe]);
      const deadline = performance.now() + timeoutMs;
      while (!(this.probeSeen.route && this.probeSeen.fdb)) {
        if (performance.now() > deadline) throw new Error(`kernel mirror: the monitors in ${this.netns} reported nothing within ${timeoutMs} ms`);
        await run("ip", [...ns, "route", "replace", "192.0.2.128/25", "via", "192.0.2.129", "dev", probe, "onlink"]);
        await run("bridge", [...ns, "fdb", "replace", "0e:00:00:00:42:42", "dev", probe, "dst", "192.0.2.2", "self", "permanent"]);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      await run("ip", [...ns, "link", "del", probe]);
    }
  }

  private onLine(line: string, atMs: number): void {
    if (line.includes("scaleprobe0")) {
      if (line.includes(" via ")) this.probeSeen.route = true;
      if (line.includes(" dst ")) this.probeSeen.fdb = true;
      return;
    }
    let m = this.fdbLine.exec(line);
    if (m) {
      const key = `f ${m[2]}`;
      if (!m[1]) this.set(key, m[3], atMs);
      else if (this.actual.get(key) === m[3]) this.set(key, undefined, atMs);
      this.count(atMs);
      return;
    }
    m = this.routeLine.exec(line);
    if (m) {
      this.set(`r ${m[2]}`, m[1] ? undefined : `${m[3]}${m[4]?.includes("onlink") ? " onlink" : ""}`, atMs);
      this.count(atMs);
      return;
    }
    m = this.neighLine.exec(line);
    if (m) {
      const usable = !m[1] && m[3] !== undefined && !/FAILED|INCOMPLETE/.test(m[4] ?? "");
      this.set(`n ${m[2]}`, usable ? m[3] : undefined, atMs);
      this.count(atMs);
    }
  }

  private count(atMs: number): void {
    this.notifications++;
    this.lastNotificationMs = atMs;
  }

  private set(key: string, value: string | undefined, atMs: number): void {
    if (value === undefined) this.actual.delete(key);
    else this.actual.set(key, value);
    this.judge(key, atMs);
  }

  private judge(key: string, atMs: number): void {
    if (this.actual.get(key) === this.wanted.get(key)) {
      this.mismatched.delete(key);
      const waiting = this.waiters.get(key);
      if (waiting) for (const w of [...waiting]) if (w.keys.every((k) => !this.mismatched.has(k))) this.finish(w, atMs);
      if (this.mismatched.size === 0 && this.convergedWaiters.length) {
        const waiting = this.convergedWaiters;
        this.convergedWaiters = [];
        for (const resolve of waiting) resolve(atMs);
      }
    } else this.mismatched.add(key);
  }

  private finish(waiter: Waiter, atMs: number): void {
    for (const k of waiter.keys) {
      const set = this.waiters.get(k);
      set?.delete(waiter);
      if (set?.size === 0) this.waiters.delete(k);
    }
    waiter.resolve(atMs);
  }

  private static keysOf(state: PeerState): Record<string, string> {
    return { [`r ${state.subnet}`]: `${state.gateway} onlink`, [`n ${state.gateway}`]: state.vtepMAC, [`f ${state.vtepMAC}`]: state.publicIP };
  }

  /**
   * A peer's entries change from `before` to `after` (undefined: none). Resolves to the time the mirror
   * first holds exactly the entries `after` asks for, those of `before` that it does not gone.
   */
  want(before: PeerState | undefined, after: PeerState | undefined): Promise<number> {
    const keys = new Set<string>();
    if (before)
      for (const key of Object.keys(KernelMirror.keysOf(before))) {
        keys.add(key);
        this.wanted.delete(key);
      }
    if (after)
      for (const [key, value] of Object.entries(KernelMirror.keysOf(after))) {
        keys.add(key);
        this.wanted.set(key, value);
      }
    const now = performance.now();
    for (const key of keys) {
      if (this.actual.get(key) === this.wanted.get(key)) this.mismatched.delete(key);
      else this.mismatched.add(key);
    }
    return new Promise((resolve) => {
      const waiter: Waiter = { keys: [...keys], resolve };
      if (waiter.keys.every((k) => !this.mismatched.has(k))) {
        resolve(now);
        return;
      }
      for (const k of waiter.keys) {
        let set = this.waiters.get(k);
        if (!set) this.waiters.set(k, (set = new Set()));
        set.add(waiter);
      }
    });
  }

  /** Resolves when the mirror holds exactly what is wanted, at the time of the notification that made it so. */
  converged(): Promise<number> {
    if (this.mismatched.size === 0) return Promise.resolve(performance.now());
    return new Promise((resolve) => this.convergedWaiters.push(resolve));
  }

  /** Entries still differing from what is wanted. */
  get differences(): number {
    return this.mismatched.size;
  }

  /** Whether a peer's entries are what they were last wanted to be. */
  settled(state: PeerState): boolean {
    return Object.keys(KernelMirror.keysOf(state)).every((k) => !this.mismatched.has(k));
  }

  /** Takes the kernel's tables as the truth (after notifications were lost), judging every entry anew. */
  async resync(): Promise<void> {
    const tables = await dumpTables(this.netns, this.device);
    const atMs = performance.now();
    const keys = new Set([...this.actual.keys(), ...this.wanted.keys()]);
    this.actual.clear();
    for (const [dst, via] of tables.routes) this.actual.set(`r ${dst}`, via);
    for (const [ip, mac] of tables.neighbours) this.actual.set(`n ${ip}`, mac);
    for (const [mac, dsts] of tables.fdb) this.actual.set(`f ${mac}`, dsts.join(","));
    for (const key of this.actual.keys()) keys.add(key);
    for (const key of keys) this.judge(key, atMs);
  }

  stop(): void {
    for (const child of this.monitors.splice(0)) child.kill("SIGKILL");
  }
}
