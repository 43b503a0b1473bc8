import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestNetns } from "./netns.js";
import { startInNetns, type NetnsProcess } from "./netns-process.js";
import { LAB_DIR_PREFIX, Underlay, type UnderlayHost } from "./underlay.js";
import { waitUntil } from "./wait.js";

/**
 * A cluster lab's etcd part, on Debian's etcd-server: a static cluster of etcd members on an underlay
 * (underlay.ts), each a process in a namespace of its own. Node namespaces join the same underlay
 * (addNode), as the agents that must reach etcd over it will.
 *
 * Addresses on the underlay's /24: .1 the bridge (where the lab's own etcdctl calls run), .11 and up
 * the members, .101 and up the nodes.
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
export type LabNode = UnderlayHost;

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
  readonly dir = mkdtempSync(join(tmpdir(), LAB_DIR_PREFIX));
  private network: Underlay | undefined;
  readonly members: Member[] = [];
  private readonly nodes: LabNode[] = [];
  readonly processIds: number[] = [];
  private readonly memberIds = new Map<string, number>();
  private removed = false;

  build(count: number): void {
    this.network = Underlay.create({ id: this.id, dir: this.dir });
    const peers: string[] = [];
    for (let index = 0; index < count; index++) {
      const name = `m${index}`;
      const { netns, address } = this.network.attach(name, MEMBER_HOST + index);
      this.members.push(new Member(this, index, name, netns, address));
      peers.push(`${name}=http://${address}:${PEER_PORT}`);
    }
    for (const member of this.members) member.initialCluster = peers.join(",");
    for (const member of this.members) member.start();
  }

  private get builtNetwork(): Underlay {
    if (!this.network) throw new Error("etcd lab: no underlay (the lab was removed, or its making failed)");
    return this.network;
  }

  get subnet(): string {
    return this.builtNetwork.subnet;
  }

  get underlay(): TestNetns {
    return this.builtNetwork.netns;
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
    const node = { ...this.builtNetwork.attach(`n-${name}`, host), name };
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
      namespaces: this.network?.namespaces() ?? [],
      links: this.network?.links() ?? [],
      processIds: [...this.processIds],
      dir: this.dir,
      reservation: this.network?.reservation ?? "",
    };
  }

  async remove(): Promise<void> {
    if (this.removed) return;
    const errors: unknown[] = [];
    await Promise.all(this.members.map((m) => m.kill().catch((err: unknown) => errors.push(err))));
    try {
      this.network?.remove();
    } catch (err) {
      errors.push(err);
    }
    rmSync(this.dir, { recursive: true, force: true });
    this.removed = true;
    if (errors.length) throw errors[0];
  }
}

class Member implements EtcdMember {
  initialCluster = "";
  private process: NetnsProcess | undefined;

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
    return this.running ? this.process?.pid : undefined;
  }

  get running(): boolean {
    return this.process?.running ?? false;
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
      // The v2 API too, so that a config left in the v2 store by an old flanneld can be staged.
      "--enable-v2=true",
    ];
    this.process = startInNetns({ netns: this.netns.name, argv: ["etcd", ...flags], logPath: this.logPath, name: `etcd lab: member ${this.name}` });
    if (this.process.pid !== undefined) this.lab.processIds.push(this.process.pid);
  }

  async stop(timeoutMs = EXIT_WAIT_MS): Promise<void> {
    await this.process?.stop(timeoutMs);
  }

  async kill(): Promise<void> {
    await this.process?.kill();
  }

  /** To the whole process group; nothing when the process is gone. */
  signal(signal: NodeJS.Signals): void {
    this.process?.signal(signal);
  }

  log(): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, "utf8") : "";
  }
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** The processes whose command line mentions `text` (a lab's dir): what a leaked member would show. */
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
