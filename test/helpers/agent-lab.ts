import { execFile, spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { driverAdd, driverDel, type DriverCall } from "./cni-driver.js";
import { createEtcdLab, type EtcdLab, type LabNode } from "./etcd-lab.js";
import { pathWithTestNode, WEFT_FLANNELD } from "./executables.js";
import { startInNetns, type NetnsProcess } from "./netns-process.js";
import { createNetns, removeNetns, type TestNetns } from "./netns.js";
import { waitUntil } from "./wait.js";

/**
 * The cluster lab with agents: an etcd lab (etcd-lab.ts: 3 members on an underlay bridge, MTU 1500),
 * the network config in etcd, and nodes on the underlay, each running weft's node agent under test
 * (WEFT_FLANNELD, executables.ts: bin/flanneld by default) in its namespace with a subnet file, a
 * health port and a log of its own. Pods are added on a node through the libcni driver and weft's
 * plugins (cni-driver.ts), reading the subnet.env the node's agent wrote. Everything lives in
 * namespaces named weftlab-<lab id>-... and under the etcd lab's dir, so an abandoned lab is swept
 * with its etcd part, and the agents die with the test process.
 */

export type Backend = "vxlan" | "host-gw";

export interface AgentLabOptions {
  /** Nodes started with the lab (default 3). */
  nodes?: number;
  backend?: Backend;
  /** The config put at <prefix>/config; default {"Network":NETWORK,"Backend":{"Type":backend}}; null: none. */
  config?: string | null;
  /** Flags given to every agent besides the lab's own. */
  agentFlags?: string[];
  /** --route-resync (seconds). */
  routeResync?: number;
  /** Wait for every agent's /readyz (default true). */
  waitReady?: boolean;
  /** Start agents at all (default true); false: nodes without agents, for hand-made subnet.env files. */
  agents?: boolean;
}

export const NETWORK = "10.244.0.0/16";
export const PREFIX = "/coreos.com/network";
const HEALTHZ_PORT = 9471;
const READY_WAIT_MS = 60_000;
const EXIT_WAIT_MS = 10_000;

export interface Lease {
  /** e.g. 10.244.3.0/24 */
  subnet: string;
  publicIp: string;
  backendType: string;
  vtepMac: string | undefined;
  /** The etcd lease id (decimal), "0" when the key has none. */
  leaseId: string;
  modRevision: number;
  /** The value as stored. */
  raw: string;
}

export interface Pod {
  readonly name: string;
  readonly node: AgentNode;
  readonly netns: TestNetns;
  /** The pod's address, without its length. */
  readonly ip: string;
  readonly containerId: string;
}

export interface PingResult {
  transmitted: number;
  received: number;
  output: string;
}

export interface ContinuousPing {
  /** Lets the ping run `graceMs` more (replies in flight), stops it and counts. */
  stop(graceMs?: number): Promise<{ transmitted: number; received: number; lost: number[] }>;
}

/** Peer state on a node, normalized for comparison. */
export interface PeerState {
  routes: string[];
  neighbours: string[];
  fdb: string[];
}

interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  flags?: string[];
}

export class AgentNode {
  private process: NetnsProcess | undefined;
  private starts = 0;

  constructor(
    private readonly lab: AgentLab,
    readonly name: string,
    private readonly host: LabNode,
    readonly dir: string,
  ) {}

  get netns(): TestNetns {
    return this.host.netns;
  }

  /** Its address on the underlay (the public IP its lease announces). */
  get address(): string {
    return this.currentAddress ?? this.host.address;
  }

  private currentAddress: string | undefined;

  /** Replaces the node's underlay address by `address` (same /24), as a host renumbered. */
  changeAddress(address: string): void {
    // Deleted first: deleting a primary address deletes the secondaries of its subnet with it.
    this.netns.exec("ip", ["addr", "del", `${this.address}/24`, "dev", this.ifName]);
    this.netns.exec("ip", ["addr", "add", `${address}/24`, "dev", this.ifName]);
    this.currentAddress = address;
  }

  private partitioned = false;

  /**
   * Cuts the node off etcd: new connections to the client port are refused and the open ones are
   * destroyed (ss -K), so the agent's calls and watch fail at once. Pod traffic is untouched.
   */
  partitionFromEtcd(): void {
    this.netns.exec("iptables", ["-w", "-I", "OUTPUT", "-p", "tcp", "--dport", "2379", "-j", "REJECT", "--reject-with", "tcp-reset"]);
    this.partitioned = true;
    this.netns.exec("ss", ["-K", "-t", "dport", "=", ":2379"]);
    const left = this.netns.exec("ss", ["-H", "-t", "state", "established", "dport", "=", ":2379"]).trim();
    if (left) throw new Error(`agent lab: ss -K left connections to etcd open (a kernel without CONFIG_INET_DIAG_DESTROY?):\n${left}`);
  }

  healPartition(): void {
    if (!this.partitioned) return;
    this.netns.exec("iptables", ["-w", "-D", "OUTPUT", "-p", "tcp", "--dport", "2379", "-j", "REJECT", "--reject-with", "tcp-reset"]);
    this.partitioned = false;
  }

  get ifName(): string {
    return this.host.ifName;
  }

  get subnetFile(): string {
    return join(this.dir, "subnet.env");
  }

  get logPath(): string {
    return join(this.dir, "flanneld.log");
  }

  get running(): boolean {
    return this.process?.running ?? false;
  }

  get pid(): number | undefined {
    return this.running ? this.process?.pid : undefined;
  }

  /** The exit code of the agent's last run, or undefined while it runs or before it ran. */
  get exitCode(): number | null | undefined {
    return this.process && !this.running ? this.process.exitCode : undefined;
  }

  /** How the last run ended: its exit code or signal, "-" before it ran. */
  private get ending(): string {
    return String(this.process?.exitCode ?? this.process?.signalCode ?? "-");
  }

  flags(extra: string[] = []): string[] {
    const options = this.lab.options;
    return [
      `--etcd-endpoints=${this.lab.etcd.endpoints.join(",")}`,
      `--etcd-prefix=${PREFIX}`,
      `--iface=${this.ifName}`,
      `--subnet-file=${this.subnetFile}`,
      "--healthz-ip=127.0.0.1",
      `--healthz-port=${HEALTHZ_PORT}`,
      ...(options.routeResync !== undefined ? [`--route-resync=${options.routeResync}`] : []),
      ...(options.agentFlags ?? []),
      ...extra,
    ];
  }

  /** Starts the agent (not waiting for it to be ready). */
  start(extraFlags: string[] = []): void {
    if (this.running) throw new Error(`agent lab: the agent of ${this.name} is already running`);
    if (!existsSync(WEFT_FLANNELD)) throw new Error(`agent lab: ${WEFT_FLANNELD} does not exist (node scripts/build.mjs builds bin/flanneld)`);
    this.starts++;
    appendFileSync(this.logPath, `=== agent lab: start ${this.starts} at ${new Date().toISOString()}\n`);
    this.process = startInNetns({
      netns: this.netns.name,
      argv: [WEFT_FLANNELD, ...this.flags(extraFlags)],
      env: { PATH: pathWithTestNode() },
      logPath: this.logPath,
      name: `agent lab: the agent of ${this.name}`,
    });
  }

  /** SIGTERM, then SIGKILL past `timeoutMs`; resolves to the exit code (null when killed). */
  async stop(timeoutMs = EXIT_WAIT_MS): Promise<number | null | undefined> {
    if (!this.running) return this.exitCode;
    if (!(await this.process?.stop(timeoutMs)))
      throw new Error(`agent lab: the agent of ${this.name} did not exit within ${timeoutMs} ms of SIGTERM (killed)\n${this.logTail()}`);
    return this.exitCode;
  }

  async kill(): Promise<void> {
    await this.process?.kill();
  }

  async restart(extraFlags: string[] = []): Promise<void> {
    await this.stop();
    this.start(extraFlags);
    await this.waitReady();
  }

  /** Exits with the agent when it exits within `timeoutMs`: its exit code; undefined when still running. */
  async waitForExit(timeoutMs: number): Promise<number | null | undefined> {
    await this.process?.waitExit(timeoutMs);
    return this.exitCode;
  }

  log(): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, "utf8") : "";
  }

  logTail(lines = 40): string {
    return `--- agent log of ${this.name} (${this.running ? "running" : `exited ${this.ending}`}), last ${lines} lines:\n${tail(this.log(), lines)}`;
  }

  /**
   * An HTTP GET on the agent's health port, from inside the node (bash's /dev/tcp: a socket must be
   * made in the node's namespace): status (0 when nothing answered) and body.
   */
  async http(path: string): Promise<{ status: number; body: string }> {
    const request = `exec 3<>/dev/tcp/127.0.0.1/${HEALTHZ_PORT} && printf 'GET ${path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && cat <&3`;
    let stdout = "";
    let status: RegExpExecArray | null = null;
    // Once more when nothing answered: on a loaded machine a connect can lose a race with the timeout.
    for (let attempt = 0; attempt < 2 && !status; attempt++) {
      ({ stdout } = await run("ip", ["netns", "exec", this.netns.name, "timeout", "5", "bash", "-c", request]));
      status = /^HTTP\/1\.[01] (\d{3})/.exec(stdout);
    }
    if (!status) return { status: 0, body: "" };
    const at = stdout.indexOf("\r\n\r\n");
    return { status: Number(status[1]), body: at < 0 ? "" : stdout.slice(at + 4) };
  }

  async readyz(): Promise<number> {
    return (await this.http("/readyz")).status;
  }

  async waitReady(timeoutMs = READY_WAIT_MS): Promise<void> {
    try {
      await waitUntil(`the agent of ${this.name} ready (/readyz 200)`, timeoutMs, async () => {
        if (!this.running) throw new Error(`the agent exited (${this.ending})`);
        return (await this.readyz()) === 200 ? true : undefined;
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${this.logTail()}`, { cause: err });
    }
  }

  /** /metrics parsed: sample name (with labels) -> value. */
  async metrics(): Promise<Map<string, number>> {
    const { status, body } = await this.http("/metrics");
    if (status !== 200) throw new Error(`agent lab: /metrics of ${this.name} answered ${status}`);
    const samples = new Map<string, number>();
    for (const line of body.split("\n")) {
      const match = /^([a-zA-Z_:][^\s]*)\s+(\S+)/.exec(line);
      if (match && !line.startsWith("#")) samples.set(match[1]!, Number(match[2]));
    }
    return samples;
  }

  /** subnet.env's variables, or undefined when there is none. */
  subnetEnv(): Record<string, string> | undefined {
    if (!existsSync(this.subnetFile)) return undefined;
    const vars: Record<string, string> = {};
    for (const line of readFileSync(this.subnetFile, "utf8").split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) vars[line.slice(0, at)] = line.slice(at + 1);
    }
    return vars;
  }

  /** The node's subnet (10.244.3.0/24) from its subnet.env. */
  subnet(): string {
    const value = this.subnetEnv()?.FLANNEL_SUBNET;
    if (!value) throw new Error(`agent lab: ${this.name} has no FLANNEL_SUBNET in ${this.subnetFile}`);
    const [ip, length] = value.split("/");
    return `${ip!.replace(/\.\d+$/, ".0")}/${length}`;
  }

  hasLink(name: string): boolean {
    return this.netns.ipJson<unknown[]>("link", "show").some((l) => (l as { ifname: string }).ifname === name);
  }

  /** flannel.1's MAC, or undefined without the device. */
  vtepMac(): string | undefined {
    if (!this.hasLink("flannel.1")) return undefined;
    return this.netns.ipJson<Array<{ address: string }>>("link", "show", "flannel.1")[0]?.address;
  }

  /** What flannel.1 holds for peers: onlink routes, permanent neighbours, fdb entries with a destination. */
  vxlanState(): PeerState {
    if (!this.hasLink("flannel.1")) return { routes: [], neighbours: [], fdb: [] };
    const routes = this.netns
      .ipJson<IpRoute[]>("route", "show", "dev", "flannel.1")
      .filter((r) => r.gateway)
      .map((r) => `${r.dst} via ${r.gateway}${r.flags?.includes("onlink") ? " onlink" : ""}`);
    const neighbours = this.netns
      .ipJson<Array<{ dst: string; lladdr?: string; state?: string[] }>>("neigh", "show", "dev", "flannel.1")
      .map((n) => `${n.dst} ${n.lladdr ?? "-"} ${(n.state ?? []).join(",")}`);
    const fdb = (JSON.parse(this.netns.exec("bridge", ["-j", "fdb", "show", "dev", "flannel.1"]) || "[]") as Array<{ mac: string; dst?: string }>)
      .filter((f) => f.dst)
      .map((f) => `${f.mac} dst ${f.dst}`);
    return { routes: routes.sort(), neighbours: neighbours.sort(), fdb: fdb.sort() };
  }

  /** host-gw's routes: those into the cluster network via a gateway on the underlay interface. */
  hostGwRoutes(): string[] {
    return this.netns
      .ipJson<IpRoute[]>("route", "show", "dev", this.ifName)
      .filter((r) => r.gateway && r.dst.startsWith("10.244."))
      .map((r) => `${r.dst} via ${r.gateway}`)
      .sort();
  }
}

export class AgentLab {
  readonly nodes: AgentNode[] = [];
  readonly pods: Pod[] = [];
  private removed = false;

  constructor(
    readonly etcd: EtcdLab,
    readonly options: AgentLabOptions,
  ) {}

  get backend(): Backend {
    return this.options.backend ?? "vxlan";
  }

  node(index: number): AgentNode {
    const node = this.nodes[index];
    if (!node) throw new Error(`agent lab: no node ${index} (it has ${this.nodes.length})`);
    return node;
  }

  /** A node on the underlay with its dir; its agent started unless `agent` is false. */
  addNode(name = `n${this.nodes.length}`, agent = this.options.agents !== false): AgentNode {
    const host = this.etcd.addNode(name);
    // A node forwards, as a Kubernetes node does (the agent does not turn it on, neither does flanneld).
    host.netns.exec("sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    const dir = join(this.etcd.dir, "nodes", name);
    mkdirSync(dir, { recursive: true });
    const node = new AgentNode(this, name, host, dir);
    this.nodes.push(node);
    if (agent) node.start();
    return node;
  }

  async putConfig(config: string): Promise<void> {
    await this.etcd.etcdctl(["put", `${PREFIX}/config`, config]);
  }

  /** The leases in etcd, by subnet. */
  async leases(): Promise<Lease[]> {
    const out = await this.etcd.etcdctl(["get", "--prefix", `${PREFIX}/subnets/`, "-w", "json"]);
    // Lease ids are int64s: quoted before parsing, as JSON numbers would lose digits.
    const parsed = JSON.parse(out.replace(/("lease":\s*)(\d+)/g, '$1"$2"')) as {
      kvs?: Array<{ key: string; value: string; lease?: string; mod_revision: number }>;
    };
    return (parsed.kvs ?? []).map((kv) => {
      const key = Buffer.from(kv.key, "base64").toString();
      const raw = Buffer.from(kv.value, "base64").toString();
      const value = JSON.parse(raw) as { PublicIP: string; BackendType: string; BackendData?: { VtepMAC?: string } | null };
      const [ip, length] = key.slice(`${PREFIX}/subnets/`.length).split("-");
      return {
        subnet: `${ip}/${length}`,
        publicIp: value.PublicIP,
        backendType: value.BackendType,
        vtepMac: value.BackendData?.VtepMAC,
        leaseId: kv.lease ?? "0",
        modRevision: kv.mod_revision,
        raw,
      };
    });
  }

  /** Writes a lease as another node would (a flanneld value; no etcd lease: it never expires). */
  async putLease(subnet: string, publicIp: string, vtepMac?: string): Promise<void> {
    const backendData = this.backend === "vxlan" ? `{"VNI":1,"VtepMAC":"${vtepMac ?? "0a:58:0a:f4:fe:01"}"}` : "null";
    const value = `{"PublicIP":"${publicIp}","PublicIPv6":null,"BackendType":"${this.backend}","BackendData":${backendData}}`;
    await this.etcd.etcdctl(["put", leaseKey(subnet), value]);
  }

  async deleteLease(subnet: string): Promise<void> {
    const out = await this.etcd.etcdctl(["del", leaseKey(subnet)]);
    if (out.trim() !== "1") throw new Error(`agent lab: no lease ${subnet} to delete (etcdctl del said ${out.trim()})`);
  }

  /** The etcd leases granted and not revoked or expired (hex ids, as etcdctl lists them). */
  async etcdLeaseIds(): Promise<string[]> {
    const out = await this.etcd.etcdctl(["lease", "list"]);
    return out
      .split("\n")
      .slice(1)
      .map((line) => line.trim())
      .filter(Boolean)
      .sort();
  }

  /** etcd's current revision. */
  async revision(): Promise<number> {
    const out = await this.etcd.etcdctl(["get", "--prefix", `${PREFIX}/`, "--limit=1", "-w", "json"]);
    return (JSON.parse(out) as { header: { revision: number } }).header.revision;
  }

  async leaseOf(node: AgentNode): Promise<Lease | undefined> {
    return (await this.leases()).find((l) => l.publicIp === node.address);
  }

  /** What `node`'s vxlan device must hold for the given leases (every one but its own). */
  expectedVxlanState(node: AgentNode, leases: Lease[]): PeerState {
    const peers = leases.filter((l) => l.publicIp !== node.address);
    const vtep = (l: Lease) => l.subnet.replace(/\/\d+$/, "");
    return {
      routes: peers.map((l) => `${l.subnet} via ${vtep(l)} onlink`).sort(),
      neighbours: peers.map((l) => `${vtep(l)} ${l.vtepMac} PERMANENT`).sort(),
      fdb: peers.map((l) => `${l.vtepMac} dst ${l.publicIp}`).sort(),
    };
  }

  expectedHostGwRoutes(node: AgentNode, leases: Lease[]): string[] {
    return leases
      .filter((l) => l.publicIp !== node.address)
      .map((l) => `${l.subnet} via ${l.publicIp}`)
      .sort();
  }

  /** Waits until every running node's kernel holds exactly what the leases in etcd say; returns the leases. */
  async waitConverged(timeoutMs: number, nodes: AgentNode[] = this.nodes.filter((n) => n.running)): Promise<Lease[]> {
    let last = "";
    try {
      return await waitUntil(`${nodes.map((n) => n.name).join(", ")} programmed for every lease in etcd`, timeoutMs, async () => {
        const leases = await this.leases();
        for (const node of nodes) {
          const have = this.backend === "vxlan" ? node.vxlanState() : node.hostGwRoutes();
          const want = this.backend === "vxlan" ? this.expectedVxlanState(node, leases) : this.expectedHostGwRoutes(node, leases);
          if (JSON.stringify(have) !== JSON.stringify(want)) {
            last = `${node.name} has ${JSON.stringify(have)}, wants ${JSON.stringify(want)}`;
            return undefined;
          }
        }
        return leases;
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}; ${last}\n${nodes.map((n) => n.logTail(20)).join("\n")}`, { cause: err });
    }
  }

  private driverCall(node: AgentNode, containerId: string, podNetns: string): DriverCall {
    return {
      node: node.netns.name,
      confDir: join(node.dir, "conf"),
      cacheDir: join(node.dir, "cni-cache"),
      network: "cbr0",
      containerId,
      podNetns,
    };
  }

  /** A pod namespace on `node`, added through the libcni driver and weft's flannel plugin. */
  async addPod(node: AgentNode, name: string): Promise<Pod> {
    const confDir = join(node.dir, "conf");
    if (!existsSync(join(confDir, "cbr0.conflist"))) {
      mkdirSync(confDir, { recursive: true });
      const conflist = {
        cniVersion: "1.0.0",
        name: "cbr0",
        plugins: [
          {
            type: "flannel",
            subnetFile: node.subnetFile,
            dataDir: join(node.dir, "flannel"),
            ipam: { dataDir: join(node.dir, "ipam") },
            delegate: { hairpinMode: true, isDefaultGateway: true },
          },
        ],
      };
      writeFileSync(join(confDir, "cbr0.conflist"), JSON.stringify(conflist, null, 2));
    }
    const netns = createNetns(`weftlab-${this.etcd.id}-p-${name}-`);
    const containerId = `${node.name}-${name}`;
    try {
      const result = await driverAdd(this.driverCall(node, containerId, netns.path));
      const address = result.ips?.[0]?.address;
      if (!address) throw new Error(`agent lab: pod ${name} on ${node.name} got no address: ${JSON.stringify(result)}`);
      const pod: Pod = { name, node, netns, ip: address.replace(/\/\d+$/, ""), containerId };
      this.pods.push(pod);
      return pod;
    } catch (err) {
      removeNetns(netns);
      throw err;
    }
  }

  async deletePod(pod: Pod): Promise<void> {
    await driverDel(this.driverCall(pod.node, pod.containerId, pod.netns.path));
    removeNetns(pod.netns);
    this.pods.splice(this.pods.indexOf(pod), 1);
  }

  /** `size`: the whole IP packet's bytes (ICMP payload + 28); df: don't fragment. Never throws for lost replies. */
  async ping(from: Pod, to: string, options: { count?: number; size?: number; df?: boolean; waitS?: number } = {}): Promise<PingResult> {
    const args = ["-n", "-c", String(options.count ?? 3), "-i", "0.2", "-W", String(options.waitS ?? 2)];
    if (options.df) args.push("-M", "do");
    if (options.size !== undefined) args.push("-s", String(options.size - 28));
    const { stdout, stderr } = await run("ip", ["netns", "exec", from.netns.name, "ping", ...args, to], 30_000);
    const output = stdout + stderr;
    const match = /(\d+) packets transmitted, (\d+) received/.exec(output);
    return { transmitted: Number(match?.[1] ?? 0), received: Number(match?.[2] ?? 0), output };
  }

  /** Every pod pings every pod on the other nodes; returns the pairs that did not get every reply. */
  async pingAcross(pods: Pod[] = this.pods, count = 2): Promise<string[]> {
    const failed: string[] = [];
    for (const from of pods) {
      for (const to of pods.filter((p) => p.node !== from.node)) {
        const result = await this.ping(from, to.ip, { count });
        if (result.received !== count)
          failed.push(`${from.name}@${from.node.name} -> ${to.name}@${to.node.name} (${to.ip}): ${result.received}/${count}`);
      }
    }
    return failed;
  }

  /** A ping every `intervalMs` from `from` to `to` until stopped; each sequence number's reply is tracked. */
  continuousPing(from: Pod, to: string, intervalMs = 50): ContinuousPing {
    const child = spawn(
      "ip",
      ["netns", "exec", from.netns.name, "setpriv", "--pdeathsig", "KILL", "ping", "-n", "-i", String(intervalMs / 1000), "-W", "1", to],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    return {
      async stop(graceMs = 1500) {
        await new Promise((resolve) => setTimeout(resolve, graceMs));
        child.kill("SIGINT");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(timer);
        const summary = /(\d+) packets transmitted, (\d+) received/.exec(output);
        if (!summary) throw new Error(`agent lab: continuous ping gave no summary:\n${tail(output, 20)}`);
        const transmitted = Number(summary[1]);
        const replied = new Set([...output.matchAll(/icmp_seq=(\d+) ttl=/g)].map((m) => Number(m[1])));
        // The last grace period's sequence numbers may still be in flight: only those before it count.
        const counted = transmitted - Math.ceil(graceMs / intervalMs);
        const lost: number[] = [];
        for (let seq = 1; seq <= counted; seq++) if (!replied.has(seq)) lost.push(seq);
        return { transmitted, received: Number(summary[2]), lost };
      },
    };
  }

  /** Every agent's log tail and the etcd members' state: what a failed test prints. */
  report(): string {
    const members = this.etcd.members.map((m) => `${m.name}: ${m.running ? "running" : "stopped"}`).join(", ");
    return [`agent lab ${this.etcd.id}: etcd ${members}`, ...this.nodes.map((n) => n.logTail())].join("\n");
  }

  /** Kills every agent, deletes the pods, the nodes, etcd and the files. Idempotent; runs on after failures. */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    const errors: unknown[] = [];
    await Promise.all(this.nodes.map((n) => n.kill().catch((err: unknown) => errors.push(err))));
    for (const pod of this.pods.splice(0)) {
      try {
        removeNetns(pod.netns);
      } catch (err) {
        errors.push(err);
      }
    }
    await this.etcd.remove().catch((err: unknown) => errors.push(err));
    if (errors.length) throw errors[0];
  }
}

/**
 * The etcd lab, healthy; the config put; the nodes made and their agents started, ready unless told
 * not to wait. What was made is removed when a step fails.
 */
export async function createAgentLab(options: AgentLabOptions = {}): Promise<AgentLab> {
  const count = options.nodes ?? 3;
  if (!Number.isInteger(count) || count < 0 || count > 9) throw new Error(`agent lab: nodes must be 0 to 9, not ${count}`);
  const etcd = await createEtcdLab();
  const lab = new AgentLab(etcd, options);
  try {
    await etcd.waitHealthy(READY_WAIT_MS);
    const config = options.config === undefined ? defaultConfig(lab.backend) : options.config;
    if (config !== null) await lab.putConfig(config);
    for (let i = 0; i < count; i++) lab.addNode();
    if (options.agents !== false && options.waitReady !== false) await Promise.all(lab.nodes.map((n) => n.waitReady()));
    return lab;
  } catch (err) {
    await lab.remove().catch(() => undefined);
    throw err;
  }
}

/** <prefix>/subnets/10.244.3.0-24 */
export function leaseKey(subnet: string): string {
  return `${PREFIX}/subnets/${subnet.replace("/", "-")}`;
}

export function defaultConfig(backend: Backend): string {
  return JSON.stringify({ Network: NETWORK, Backend: { Type: backend } });
}

/** Runs a command; a failure (exit code, timeout) is the result's, not an exception. */
async function run(command: string, args: string[], timeoutMs = 10_000): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  return await new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, killSignal: "SIGKILL", encoding: "utf8" }, (err, stdout, stderr) => {
      resolve({ ok: !err, stdout, stderr: stderr || (err ? err.message : "") });
    });
  });
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
