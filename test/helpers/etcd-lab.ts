import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { appendFileSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, removeNetns, type TestNetns } from "./netns.js";
import { waitUntil } from "./wait.js";

/**
 * A cluster lab's etcd part, on Debian's etcd-server: an underlay (a bridge alone in a namespace,
 * MTU 1500, on a private /24 of the lab's own) and a static cluster of etcd members, each a process in
 * a namespace of its own joined to the underlay by a veth. Node namespaces join the same underlay
 * (addNode), as the agents that must reach etcd over it will. Nothing is made in the host's
 * namespace: the veths are created inside the underlay namespace with their other end in the
 * member's, so deleting the namespaces deletes every link.
 *
 * Addresses on the /24: .1 the bridge (where the lab's own etcdctl calls run), .11 and up the
 * members, .101 and up the nodes.
 */

export interface EtcdLabOptions {
  /** Number of members (default 3). */
  members?: number;
}

export interface EtcdMember {
  readonly index: number;
  /** The etcd member name (--name). */
  readonly name: string;
  readonly netns: TestNetns;
  /** Its address on the underlay. */
  readonly address: string;
  /** http://<address>:2379 */
  readonly endpoint: string;
  /** The etcd process's id while it runs (also its process group's). */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Starts the member's etcd on its data dir (the first start forms the cluster, later ones rejoin it). */
  start(): void;
  /** SIGTERM, then SIGKILL if it has not exited within `timeoutMs`. */
  stop(timeoutMs?: number): Promise<void>;
  /** SIGKILL to the whole process group. */
  kill(): Promise<void>;
  /** The member's log (etcd's stderr) so far. */
  log(): string;
}

/** A namespace on the underlay, for an agent node or a client. */
export interface LabNode {
  readonly name: string;
  readonly netns: TestNetns;
  /** Its address on the underlay. */
  readonly address: string;
  /** The underlay interface inside the namespace. */
  readonly ifName: string;
}

/** Everything a lab made, so a test can assert that remove() left none of it. */
export interface LabResources {
  namespaces: string[];
  /** The underlay ports' names (made only inside the underlay namespace). */
  links: string[];
  processIds: number[];
  dir: string;
  reservation: string;
}

export interface EtcdctlOptions {
  /** Default: every member's endpoint. */
  endpoints?: string[];
  /** The namespace etcdctl runs in; default: the underlay's. */
  from?: TestNetns;
  timeoutMs?: number;
}

export interface EtcdLab {
  readonly id: string;
  /** The underlay's /24, e.g. 172.31.17.0/24. */
  readonly subnet: string;
  /** The temp dir holding the members' data dirs and logs. */
  readonly dir: string;
  readonly underlay: TestNetns;
  readonly members: readonly EtcdMember[];
  /** Every member's client URL, in member order. */
  readonly endpoints: string[];
  member(index: number): EtcdMember;
  /** A namespace named after `name` with a veth on the underlay bridge and the next node address. */
  addNode(name: string): LabNode;
  /** Runs etcdctl (v3 API) and returns its stdout; throws with its stderr when it fails. */
  etcdctl(args: string[], options?: EtcdctlOptions): Promise<string>;
  /** Resolves once every running member is healthy and they agree on a leader among them. */
  waitHealthy(timeoutMs: number): Promise<void>;
  /** The index of the leader the running members agree on, or undefined (no quorum, an election, no answer). */
  leader(): Promise<number | undefined>;
  resources(): LabResources;
  /** Kills every process, deletes the namespaces (and with them every link), the files and the reservation. Idempotent. */
  remove(): Promise<void>;
}

const CLIENT_PORT = 2379;
const PEER_PORT = 2380;
const MEMBER_HOST = 11;
const NODE_HOST = 101;
const EXIT_WAIT_MS = 10_000;
const RESERVATIONS = "/run/weft-etcd-lab";

/**
 * Makes the underlay and the members and starts them; it does not wait for the cluster (waitHealthy).
 * When anything fails on the way, what was made is removed before the error is thrown.
 */
export async function createEtcdLab(options: EtcdLabOptions = {}): Promise<EtcdLab> {
  const count = options.members ?? 3;
  if (!Number.isInteger(count) || count < 1 || count > 9) throw new Error(`etcd lab: members must be 1 to 9, not ${count}`);
  const lab = new Lab();
  try {
    lab.build(count);
  } catch (err) {
    await lab.remove().catch(() => undefined);
    throw err;
  }
  return lab;
}

class Lab implements EtcdLab {
  readonly id = randomBytes(4).toString("hex");
  readonly dir: string;
  subnet = "";
  reservation = "";
  underlay!: TestNetns;
  readonly members: Member[] = [];
  private readonly nodes: LabNode[] = [];
  private readonly namespaces: TestNetns[] = [];
  private readonly links: string[] = [];
  readonly processIds: number[] = [];
  private memberIds = new Map<string, number>();
  private removed = false;
  private prefix = "";

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "weft-etcd-lab-"));
  }

  build(count: number): void {
    ({ path: this.reservation, prefix: this.prefix } = reserveSubnet({ pid: process.pid, labId: this.id, dir: this.dir }));
    this.subnet = `${this.prefix}.0/24`;
    this.underlay = this.newNetns("underlay");
    this.underlay.exec("ip", ["link", "add", "br0", "mtu", "1500", "type", "bridge", "forward_delay", "0"]);
    this.underlay.exec("ip", ["addr", "add", `${this.prefix}.1/24`, "dev", "br0"]);
    this.underlay.exec("ip", ["link", "set", "br0", "up"]);
    const peers: string[] = [];
    for (let index = 0; index < count; index++) {
      const name = `m${index}`;
      const netns = this.newNetns(name);
      const address = `${this.prefix}.${MEMBER_HOST + index}`;
      this.plug(netns, `${this.linkPrefix()}m${index}`, address);
      this.members.push(new Member(this, index, name, netns, address));
      peers.push(`${name}=http://${address}:${PEER_PORT}`);
    }
    for (const member of this.members) member.initialCluster = peers.join(",");
    for (const member of this.members) member.start();
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  member(index: number): Member {
    const member = this.members[index];
    if (!member) throw new Error(`etcd lab: no member ${index} (it has ${this.members.length})`);
    return member;
  }

  addNode(name: string): LabNode {
    if (!/^[a-z0-9][a-z0-9-]{0,15}$/.test(name)) throw new Error(`etcd lab: node name ${JSON.stringify(name)}: use 1 to 16 of a-z, 0-9, -`);
    if (this.nodes.some((n) => n.name === name)) throw new Error(`etcd lab: node ${name} exists`);
    const host = NODE_HOST + this.nodes.length;
    if (host > 254) throw new Error("etcd lab: the underlay /24 has no node address left");
    const netns = this.newNetns(`n-${name}`);
    const address = `${this.prefix}.${host}`;
    this.plug(netns, `${this.linkPrefix()}n${this.nodes.length}`, address);
    const node = { name, netns, address, ifName: "eth0" };
    this.nodes.push(node);
    return node;
  }

  async etcdctl(args: string[], options: EtcdctlOptions = {}): Promise<string> {
    const endpoints = options.endpoints ?? this.endpoints;
    const from = options.from ?? this.underlay;
    const timeoutMs = options.timeoutMs ?? 15_000;
    const argv = ["netns", "exec", from.name, "etcdctl", `--endpoints=${endpoints.join(",")}`, "--dial-timeout=2s", "--command-timeout=5s", ...args];
    return await new Promise((resolve, reject) => {
      execFile(
        "ip",
        argv,
        { env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ETCDCTL_API: "3" }, timeout: timeoutMs, killSignal: "SIGKILL" },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`etcdctl ${args.join(" ")} (in ${from.name}, ${endpoints.join(",")}): ${stderr.trim() || err.message}`));
          else resolve(stdout);
        },
      );
    });
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    try {
      await waitUntil("every running etcd member healthy, with one leader", timeoutMs, async () => {
        const running = this.members.filter((m) => m.running);
        if (running.length === 0) throw new Error("no member is running");
        await this.etcdctl(["endpoint", "health"], { endpoints: running.map((m) => m.endpoint) });
        return (await this.leader()) === undefined ? undefined : true;
      });
    } catch (err) {
      const logs = this.members.map((m) => `--- ${m.name} (${m.running ? "running" : "not running"}), last lines of its log:\n${tail(m.log(), 15)}`);
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n${logs.join("\n")}`, { cause: err });
    }
  }

  async leader(): Promise<number | undefined> {
    const running = this.members.filter((m) => m.running);
    const statuses = await Promise.all(running.map((m) => this.status(m).catch(() => undefined)));
    const answered = statuses.filter((s) => s !== undefined);
    if (answered.length === 0) return undefined;
    for (const [i, status] of statuses.entries()) if (status) this.memberIds.set(status.memberId, running[i]!.index);
    const leaderId = answered[0]!.leaderId;
    if (leaderId === "0" || answered.some((s) => s.leaderId !== leaderId)) return undefined;
    const index = this.memberIds.get(leaderId);
    return index !== undefined && this.members[index]!.running ? index : undefined;
  }

  /** The member's own id and the leader it follows, as decimal strings (uint64 loses precision as a JS number). */
  private async status(member: Member): Promise<{ memberId: string; leaderId: string }> {
    const out = await this.etcdctl(["endpoint", "status", "-w", "json"], { endpoints: [member.endpoint], timeoutMs: 10_000 });
    const [status] = JSON.parse(out.replace(/(?<=[:[,]\s*)(\d{16,})/g, '"$1"')) as [
      { Status: { header: { member_id: string | number }; leader: string | number } },
    ];
    return { memberId: String(status.Status.header.member_id), leaderId: String(status.Status.leader) };
  }

  resources(): LabResources {
    return {
      namespaces: this.namespaces.map((ns) => ns.name),
      links: [...this.links],
      processIds: [...this.processIds],
      dir: this.dir,
      reservation: this.reservation,
    };
  }

  async remove(): Promise<void> {
    const errors: unknown[] = [];
    await Promise.all(this.members.map((m) => m.kill().catch((err: unknown) => errors.push(err))));
    try {
      this.removeNow();
    } catch (err) {
      errors.push(err);
    }
    if (errors.length) throw errors[0];
  }

  /** Synchronous cleanup: SIGKILL to every member's process group, then namespaces, files, reservation. */
  removeNow(): void {
    if (this.removed) return;
    const errors: unknown[] = [];
    for (const member of this.members) member.signal("SIGKILL");
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        removeNetns(ns);
      } catch (err) {
        errors.push(err);
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    if (this.reservation) rmSync(this.reservation, { force: true });
    this.removed = true;
    if (errors.length) throw errors[0];
  }

  private newNetns(role: string): TestNetns {
    const ns = createNetns(`weftlab-${this.id}-${role}-`);
    this.namespaces.push(ns);
    return ns;
  }

  /** Unique across labs, so a link that leaked into the host's namespace would be found by name. */
  private linkPrefix(): string {
    return `wl${this.id.slice(0, 6)}`;
  }

  /** A veth from the underlay bridge to `netns` (eth0 there), addressed and up. */
  private plug(netns: TestNetns, port: string, address: string): void {
    this.underlay.exec("ip", ["link", "add", port, "mtu", "1500", "type", "veth", "peer", "name", "eth0", "netns", netns.name, "mtu", "1500"]);
    this.links.push(port);
    this.underlay.exec("ip", ["link", "set", port, "master", "br0", "up"]);
    netns.exec("ip", ["addr", "add", `${address}/24`, "dev", "eth0"]);
    netns.exec("ip", ["link", "set", "eth0", "up"]);
  }
}

class Member implements EtcdMember {
  initialCluster = "";
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly lab: Lab,
    readonly index: number,
    readonly name: string,
    readonly netns: TestNetns,
    readonly address: string,
  ) {}

  get endpoint(): string {
    return `http://${this.address}:${CLIENT_PORT}`;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private get logPath(): string {
    return join(this.lab.dir, `${this.name}.log`);
  }

  start(): void {
    if (this.running) throw new Error(`etcd lab: member ${this.name} is already running`);
    const flags = [
      `--name=${this.name}`,
      `--data-dir=${join(this.lab.dir, this.name)}`,
      `--listen-client-urls=${this.endpoint}`,
      `--advertise-client-urls=${this.endpoint}`,
      `--listen-peer-urls=http://${this.address}:${PEER_PORT}`,
      `--initial-advertise-peer-urls=http://${this.address}:${PEER_PORT}`,
      `--initial-cluster=${this.initialCluster}`,
      "--initial-cluster-state=new",
      `--initial-cluster-token=weftlab-${this.lab.id}`,
      "--logger=zap",
      "--log-outputs=stderr",
    ];
    const log = openSync(this.logPath, "a");
    try {
      // ip netns exec and setpriv exec in place, so the child's pid is etcd's; detached makes it the
      // leader of a process group of its own, which kill() signals whole. The parent-death signal
      // kills it with the test process, whose exit handlers vitest's SIGTERM skips.
      const child = spawn("ip", ["netns", "exec", this.netns.name, "setpriv", "--pdeathsig", "KILL", "etcd", ...flags], {
        detached: true,
        stdio: ["ignore", log, log],
        env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
      });
      this.child = child;
      this.exited = new Promise((resolve) => {
        child.once("exit", () => resolve());
        child.once("error", (err) => {
          appendFileSync(this.logPath, `etcd lab: spawn failed: ${err.message}\n`);
          resolve();
        });
      });
      if (child.pid !== undefined) this.lab.processIds.push(child.pid);
    } finally {
      closeSync(log);
    }
  }

  async stop(timeoutMs = EXIT_WAIT_MS): Promise<void> {
    if (!this.running) return;
    this.signal("SIGTERM");
    if (!(await this.waitExit(timeoutMs))) await this.kill();
  }

  async kill(): Promise<void> {
    if (!this.running) return;
    this.signal("SIGKILL");
    if (!(await this.waitExit(EXIT_WAIT_MS))) throw new Error(`etcd lab: member ${this.name} (pid ${this.child?.pid}) did not exit on SIGKILL`);
  }

  /** To the whole process group; nothing when the process is gone. */
  signal(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined || !this.running) return;
    try {
      process.kill(-pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }

  log(): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, "utf8") : "";
  }

  private async waitExit(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([this.exited.then(() => true as const), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A reservation file's contents: who holds the /24, and what to sweep once that process is gone. */
interface Reservation {
  pid: number;
  labId: string;
  dir: string;
}

/**
 * Claims a /24 of 172.31.0.0/16 that no other lab on this machine holds: a file per /24 under /run,
 * created exclusively. Labs abandoned by a dead test process are swept first.
 */
function reserveSubnet(owner: Reservation): { path: string; prefix: string } {
  mkdirSync(RESERVATIONS, { recursive: true });
  sweepAbandonedLabs();
  const start = randomInt(1, 255);
  for (let i = 0; i < 254; i++) {
    const third = ((start - 1 + i) % 254) + 1;
    const path = join(RESERVATIONS, `172-31-${third}`);
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, JSON.stringify(owner));
      closeSync(fd);
      return { path, prefix: `172.31.${third}` };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
  throw new Error(`etcd lab: every /24 of 172.31.0.0/16 is reserved (${RESERVATIONS})`);
}

/**
 * vitest ends a worker with SIGTERM, so no exit handler of a test file that failed to call remove()
 * runs: its members die with it (they run under --pdeathsig), and its namespaces, temp dir and
 * reservation are removed here, by the next lab made on the machine.
 */
function sweepAbandonedLabs(): void {
  for (const entry of readdirSync(RESERVATIONS)) {
    const path = join(RESERVATIONS, entry);
    let owner: Reservation;
    try {
      owner = JSON.parse(readFileSync(path, "utf8")) as Reservation;
    } catch {
      continue; // being written, or not a lab's
    }
    if (!/^[0-9a-f]{8}$/.test(owner.labId) || isAlive(owner.pid)) continue;
    const namespaces = existsSync("/run/netns") ? readdirSync("/run/netns") : [];
    for (const ns of namespaces.filter((name) => name.startsWith(`weftlab-${owner.labId}-`))) {
      try {
        removeNetns(ns);
      } catch {
        // Another lab's sweep got there first.
      }
    }
    if (owner.dir.startsWith(join(tmpdir(), "weft-etcd-lab-"))) rmSync(owner.dir, { recursive: true, force: true });
    rmSync(path, { force: true });
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Whether any process's command line mentions `text` (a lab's dir): what a leaked member would show. */
export function processesMentioning(text: string): number[] {
  const found: number[] = [];
  const self = String(process.pid);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || entry === self) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(text)) found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}
