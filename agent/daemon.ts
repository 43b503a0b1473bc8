import { mkdirSync, readFileSync } from "node:fs";
import type { Server } from "node:http";
import { basename, dirname, join } from "node:path";
import type { CompiledValidator } from "../lib/cni/config.js";
import { EtcdClient, type EtcdClientOptions, type Watch } from "../lib/etcd/client.js";
import { writeFileAtomically } from "../lib/files/atomic-write.js";
import { readSmallFile } from "../lib/files/small-file.js";
import { formatCidr } from "../lib/ip/ip.js";
import { Rtnl } from "../lib/netlink/rtnl.js";
import type { Backend, KernelNotice } from "./backend.js";
import { findV2Config, v2MigrationMessage } from "./etcd-v2.js";
import { chooseExternalInterface, nodeFacts, type ExternalInterface } from "./external-interface.js";
import type { AgentFlags } from "./flags.js";
import { startHealthServer } from "./health.js";
import { HostGwBackend } from "./hostgw-backend.js";
import { watchKernel } from "./kernel-notices.js";
import { configKey, parseVxlanBackendData, type LeaseAttrs, type LeaseSubnets } from "./lease.js";
import { describeSubnets, LeaseKeeper, type AcquiredLease } from "./lease-keeper.js";
import type { Logger } from "./log.js";
import { AgentMetrics } from "./metrics.js";
import { parseNetworkConfig, type NetworkConfig } from "./network-config.js";
import { formatSubnetEnv, previousSubnets } from "./subnet-env.js";
import { SubnetRegistry, type LeaseEvent, type StoredLease } from "./subnet-registry.js";
import { iptablesTrafficRules, nftablesTrafficRules, type TrafficRules, type TrafficRulesSpec } from "./traffic-rules.js";
import { UdpBackend } from "./udp-backend.js";
import { VxlanBackend } from "./vxlan-backend.js";

/** How long the agent waits between attempts while etcd does not answer: doubling from 1 s to 10 s. */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 10_000;
/** How long a stop waits for the change under way. */
const STOP_WAIT_MS = 2000;
/** subnet.env is a few hundred bytes; a larger file there is not one the agent wrote. */
const SUBNET_ENV_MAX_BYTES = 64 * 1024;

export interface AgentOptions {
  flags: AgentFlags;
  log: Logger;
  /** The network config's schema, compiled at build time. */
  validateConfig: CompiledValidator;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}: give a readable PEM file`, { cause: err });
  }
}

/** The etcd client's options from flanneld's etcd flags. */
export function etcdClientOptions(flags: AgentFlags): EtcdClientOptions {
  const tls: EtcdClientOptions["tls"] = {};
  if (flags.etcdCafile) tls.ca = readPem(flags.etcdCafile, "--etcd-cafile");
  if (flags.etcdCertfile) tls.cert = readPem(flags.etcdCertfile, "--etcd-certfile");
  if (flags.etcdKeyfile) tls.key = readPem(flags.etcdKeyfile, "--etcd-keyfile");
  const endpoints = flags.etcdEndpoints.map((e) => (e.includes("://") ? e : `http://${e}`));
  return {
    endpoints,
    // A silent etcd (a member stopped, a link down) is noticed within about 10 s, so /readyz tells;
    // etcd refuses pings more often than every 5 s.
    pingMs: 5000,
    pingTimeoutMs: 5000,
    ...(Object.keys(tls).length > 0 ? { tls } : {}),
    ...(flags.etcdUsername ? { auth: { username: flags.etcdUsername, password: flags.etcdPassword } } : {}),
  };
}

/**
 * weft's flanneld in etcd mode: flanneld's start-up order (health server, network config, external
 * interface, backend device, lease, rules, subnet.env), then the other nodes' leases watched and the
 * kernel kept level-triggered. Stopping leaves the data path (device, routes, fdb, lease) in place.
 */
export class Agent {
  readonly metrics = new AgentMetrics();
  private readonly log: Logger;
  private readonly flags: AgentFlags;
  private client?: EtcdClient;
  private registry?: SubnetRegistry;
  private nl?: Rtnl;
  private health?: Server;
  private config?: NetworkConfig;
  private external?: ExternalInterface;
  private backend?: Backend;
  private keeper?: LeaseKeeper;
  private rules: TrafficRules[] = [];
  private watch?: Watch;
  private stopKernelWatch?: () => void;
  private timers: NodeJS.Timeout[] = [];
  /** Other nodes' leases as programmed, by key. */
  private readonly peers = new Map<string, StoredLease>();
  /** Lease events and repairs run one at a time, in order. */
  private queue: Promise<void> = Promise.resolve();
  private readonly pendingRepairs = new Set<string>();
  private resyncPending = false;
  private externalCheckPending = false;
  private setUpDone = false;
  private stopping = false;
  private notReady = "starting";

  constructor(private readonly o: AgentOptions) {
    this.log = o.log;
    this.flags = o.flags;
  }

  get ready(): boolean {
    return this.setUpDone && this.metrics.etcdReachable === 1;
  }

  /** Runs the start-up; resolves once the node's network is in place and the watch is running. */
  async start(): Promise<void> {
    const { flags } = this;
    if (flags.healthzPort !== 0) {
      this.health = await startHealthServer(
        flags.healthzIP,
        flags.healthzPort,
        { ready: () => this.ready, notReadyReason: () => (this.setUpDone ? "etcd is unreachable: retrying" : this.notReady) },
        this.metrics,
      );
      this.log.info(`health server on ${flags.healthzIP}:${flags.healthzPort} (/healthz, /readyz, /metrics)`);
    }
    this.client = new EtcdClient(etcdClientOptions(flags));
    this.registry = new SubnetRegistry(this.client, flags.etcdPrefix, this.metrics);
    this.config = await this.waitForConfig();
    for (const w of this.config.warnings) this.log.warn(`network config: ${w}`);

    this.nl = await Rtnl.open();
    this.external = await this.chooseExternal();
    this.log.info(
      `using interface ${this.external.name} (ifindex ${this.external.index}, mtu ${this.external.mtu}), ` +
        `public address ${[this.external.extAddr, this.external.extV6Addr].filter(Boolean).join(" and ")}`,
    );

    const previous = this.readPreviousSubnets();
    const { leases } = await this.retrying("list the leases", () => this.registry!.list());
    this.backend = this.createBackend(leases);
    await this.backend.setUp();

    this.keeper = new LeaseKeeper({
      registry: this.registry,
      config: this.config,
      log: this.log,
      previous,
      renewMarginMinutes: flags.subnetLeaseRenewMarginMinutes,
      ownsLease: (stored) => this.ownsByVtep(stored),
    });
    const own = await this.retrying("acquire a lease", () => this.keeper!.acquire(this.leaseAttrs(), leases));
    await this.useOwnLease(own);

    // Every lease into the backend's table, then one full pass: a restarted agent whose kernel is
    // already right changes nothing; a new one adds what is missing and drops what no lease wants.
    const { leases: now, revision } = await this.retrying("list the leases", () => this.registry!.list());
    for (const stored of now) await this.applyPut(stored, revision, { kernel: false });
    const repairs = await this.backend.resync();
    this.metrics.resyncs++;
    this.log.info(`programmed the other nodes' leases: ${repairs} routes, neighbours and fdb entries added or removed`);
    this.setUpDone = true;
    this.log.info(`ready: ${this.backend.peerCount} other nodes programmed at etcd revision ${revision}`);
    this.startWatch(revision + 1);
    this.stopKernelWatch = watchKernel(this.nl, (notice) => this.onKernelNotice(notice));
    this.every(flags.routeResyncSeconds * 1000, () => this.requestResync());
    if (this.rules.length > 0) this.every(flags.iptablesResyncSeconds * 1000, () => this.enqueue(() => this.resyncRules()));
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    this.timers.push(t);
  }

  /** A step that needs etcd, tried until it succeeds: etcd down at start is waited out, loudly. */
  private async retrying<T>(what: string, step: () => Promise<T>): Promise<T> {
    let delay = RETRY_MIN_MS;
    for (;;) {
      try {
        const result = await step();
        this.metrics.etcdReachable = 1;
        return result;
      } catch (err) {
        if (this.stopping) throw err;
        if (!isEtcdUnavailable(err)) throw err;
        this.metrics.etcdReachable = 0;
        this.notReady = `etcd is unreachable (${(err as Error).message}): retrying`;
        this.log.warn(`could not ${what}: etcd is unreachable (${(err as Error).message}); trying again in ${delay / 1000} s`);
        await sleep(delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      }
    }
  }

  /** The network config, waited on (checked every second) while it is absent or invalid, each problem said once. */
  private async waitForConfig(): Promise<NetworkConfig> {
    const key = configKey(this.flags.etcdPrefix);
    let said = "";
    let v2Checked = false;
    const say = (message: string) => {
      this.notReady = message;
      if (message !== said) this.log.error(message);
      said = message;
    };
    for (;;) {
      const text = await this.retrying(`read the network config ${key}`, () => this.registry!.config());
      if (text === undefined) {
        let message = `waiting for the network config: ${key} is not in etcd (put it with etcdctl put ${key} '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}')`;
        if (!v2Checked) {
          v2Checked = true;
          const options = etcdClientOptions(this.flags);
          if (await findV2Config(key, { endpoints: options.endpoints, tls: options.tls }))
            message = `waiting for the network config: ${v2MigrationMessage(key)}`;
        }
        say(message);
      } else {
        try {
          const config = parseNetworkConfig(text, this.o.validateConfig, key);
          if (said) this.log.info(`network config ${key} is valid now`);
          return config;
        } catch (err) {
          say(`waiting for a valid network config: ${(err as Error).message}`);
        }
      }
      await sleep(1000);
      if (this.stopping) throw new Error("stopped while waiting for the network config");
    }
  }

  private async chooseExternal(): Promise<ExternalInterface> {
    const { flags, config } = this;
    return chooseExternalInterface(await nodeFacts(this.nl!), {
      iface: flags.iface,
      ifaceRegex: flags.ifaceRegex,
      ifaceCanReach: flags.ifaceCanReach,
      publicIP: flags.publicIP,
      publicIPv6: flags.publicIPv6,
      ipv4: config!.ipv4 !== undefined,
      ipv6: config!.ipv6 !== undefined,
    });
  }

  private readPreviousSubnets(): LeaseSubnets | undefined {
    const file = readSmallFile(this.flags.subnetFile, SUBNET_ENV_MAX_BYTES);
    if (file.state !== "read") return undefined;
    const previous = previousSubnets(file.bytes.toString("utf8"));
    return previous.ipv4 || previous.ipv6 ? previous : undefined;
  }

  /** The backend; a vxlan device created anew takes the MAC this node's lease already announces. */
  private createBackend(leases: readonly StoredLease[]): Backend {
    const config = this.config!;
    const external = this.external!;
    const warn = (m: string) => this.log.warn(m);
    if (config.backend.type === "host-gw") return new HostGwBackend(this.nl!, config, external, this.metrics, warn);
    if (config.backend.type === "udp") {
      if (!config.ipv4) throw new Error("the udp backend carries IPv4 only, as flanneld's: the network config needs Network");
      if (config.ipv6) warn("the udp backend carries IPv4 only, as flanneld's: IPv6Network is not routed");
      const udp = new UdpBackend({ nl: this.nl!, config: config.backend, external, network: config.ipv4.network, counter: this.metrics, warn });
      this.metrics.sections.push(() => udp.counters.format());
      return udp;
    }
    const previousMac: { 4?: string; 6?: string } = {};
    // The MAC this node's lease announces, for a device made anew (after a reboot).
    const mine = leases.find(
      (l) =>
        (external.extAddr !== undefined && l.lease.attrs.publicIP === external.extAddr) ||
        (external.extV6Addr !== undefined && l.lease.attrs.publicIPv6 === external.extV6Addr),
    );
    for (const [family, data] of [
      [4, mine?.lease.attrs.backendData],
      [6, mine?.lease.attrs.backendV6Data],
    ] as const) {
      if (mine?.lease.attrs.backendType !== "vxlan" || data === undefined) continue;
      try {
        previousMac[family] = parseVxlanBackendData(data, mine.key).vtepMAC;
      } catch {
        // An unreadable lease gives no MAC: the device gets a new one.
      }
    }
    return new VxlanBackend({
      nl: this.nl!,
      config: config.backend,
      external,
      ...(config.ipv4 ? { ipv4: formatCidr(config.ipv4.network) } : {}),
      ...(config.ipv6 ? { ipv6: formatCidr(config.ipv6.network) } : {}),
      counter: this.metrics,
      previousMac,
      warn,
    });
  }

  /** A lease naming the VTEP MAC of the device this node kept is this node's, whatever address it names. */
  private ownsByVtep(stored: StoredLease): boolean {
    const backend = this.backend;
    if (!(backend instanceof VxlanBackend) || stored.lease.attrs.backendType !== "vxlan") return false;
    try {
      return backend.keptVtepMac(parseVxlanBackendData(stored.lease.attrs.backendData, stored.key).vtepMAC);
    } catch {
      return false;
    }
  }

  /** This node's lease value: its public addresses and the backend's data. */
  private leaseAttrs(): LeaseAttrs {
    const data = this.backend!.backendData();
    const ext = this.external!;
    return {
      publicIP: ext.extAddr ?? "0.0.0.0",
      publicIPv6: ext.extV6Addr ?? null,
      // flanneld's udp backend leaves BackendType empty (omitted).
      ...(this.backend!.type === "udp" ? {} : { backendType: this.backend!.type }),
      ...(this.config!.ipv4 ? { backendData: data.v4 } : {}),
      ...(this.config!.ipv6 ? { backendV6Data: data.v6 } : {}),
    };
  }

  /** The node's own subnets applied: the backend's address, the rules, then subnet.env (last: the plugins start using it). */
  private async useOwnLease(own: AcquiredLease): Promise<void> {
    await this.backend!.configure(own.subnets);
    await this.applyRules(own.subnets);
    this.writeSubnetEnv(own.subnets);
  }

  private ruleSpecs(own: LeaseSubnets): TrafficRulesSpec[] {
    const specs: TrafficRulesSpec[] = [];
    for (const [family, pool, subnet] of [
      [4, this.config!.ipv4, own.ipv4],
      [6, this.config!.ipv6, own.ipv6],
    ] as const) {
      if (!pool || !subnet) continue;
      specs.push({
        family,
        network: formatCidr(pool.network),
        podSubnet: formatCidr(subnet),
        masquerade: this.flags.ipMasq,
        forward: this.flags.iptablesForwardRules,
      });
    }
    return specs.filter((s) => s.masquerade || s.forward);
  }

  private ownSpecs: TrafficRulesSpec[] = [];

  private async applyRules(own: LeaseSubnets): Promise<void> {
    this.ownSpecs = this.ruleSpecs(own);
    if (this.ownSpecs.length === 0) return;
    this.rules = [this.config!.enableNFTables ? nftablesTrafficRules() : iptablesTrafficRules()];
    for (const spec of this.ownSpecs) for (const rules of this.rules) await rules.apply(spec);
    this.log.info(
      `${this.config!.enableNFTables ? "nftables" : "iptables"} rules in place: ` +
        this.ownSpecs.map((s) => `IPv${s.family}${s.masquerade ? " masquerade" : ""}${s.forward ? " forward" : ""}`).join(", "),
    );
  }

  private async resyncRules(): Promise<void> {
    for (const spec of this.ownSpecs) {
      for (const rules of this.rules) {
        try {
          const missing = await rules.missing(spec);
          if (missing.length === 0) continue;
          this.log.warn(`restoring ${missing.length} netfilter rules: ${missing.join("; ")}`);
          await rules.apply(spec);
        } catch (err) {
          this.log.error(`checking the netfilter rules failed: ${(err as Error).message}`);
        }
      }
    }
  }

  private writeSubnetEnv(own: LeaseSubnets): void {
    const path = this.flags.subnetFile;
    const text = formatSubnetEnv({ config: this.config!, subnets: own, mtu: this.backend!.mtu, ipMasq: this.flags.ipMasq });
    mkdirSync(dirname(path), { recursive: true });
    writeFileAtomically(path, text, { mode: 0o644, temporary: join(dirname(path), `.${basename(path)}.${process.pid}.tmp`), durable: true });
    this.log.info(`wrote ${path}: ${text.trim().split("\n").join(" ")}`);
  }

  // --- the other nodes' leases -----------------------------------------------------------------

  private enqueue(work: () => Promise<void>): void {
    this.queue = this.queue.then(work).catch((err: unknown) => this.log.error((err as Error).message));
  }

  private startWatch(fromRevision: number): void {
    this.watch = this.registry!.watch(fromRevision, (event) => this.enqueue(() => this.onLeaseEvent(event)));
  }

  private async onLeaseEvent(event: LeaseEvent): Promise<void> {
    if (this.stopping) return;
    switch (event.type) {
      case "watching":
        if (this.metrics.etcdReachable === 0) this.log.info("etcd answers again: watching the leases");
        this.metrics.etcdReachable = 1;
        return;
      case "reconnecting":
        if (this.metrics.etcdReachable === 1) {
          this.log.warn(`lost the watch on the leases (${event.error.message}): the data path stays as it is; reconnecting`);
        }
        this.metrics.etcdReachable = 0;
        return;
      case "compacted":
        this.log.warn("etcd compacted past the watch's revision: listing the leases again");
        await this.relist();
        return;
      case "unreadable":
        this.log.warn(`ignoring ${event.unreadable.key}: ${event.unreadable.problem}`);
        if (this.peers.has(event.unreadable.key)) await this.applyDelete(event.unreadable.key, event.revision);
        return;
      case "put":
        await this.applyPut(event.stored, event.revision);
        return;
      case "delete":
        await this.applyDelete(event.key, event.revision);
        return;
    }
  }

  private applied(revision: number): void {
    this.metrics.watchRevision = Math.max(this.metrics.watchRevision, revision);
    this.metrics.lastEventAppliedSeconds = Date.now() / 1000;
    this.metrics.peers = this.backend!.peerCount;
  }

  private async applyPut(stored: StoredLease, revision: number, options = { kernel: true }): Promise<void> {
    const own = this.keeper!.own!;
    if (stored.key === own.key) {
      const mine = this.keeper!.attrs!;
      if (this.keeper!.isOwnValue(stored.lease.attrs)) {
        // This node's own write.
      } else if (stored.lease.attrs.publicIP !== mine.publicIP || stored.lease.attrs.publicIPv6 !== mine.publicIPv6) {
        this.log.error(
          `this node's subnet ${stored.key} now names another node (${stored.lease.attrs.publicIP}): leaving it to that node and acquiring another`,
        );
        const before = this.keeper!.own!;
        const now = await this.retrying("acquire a lease", () => this.keeper!.acquire(mine));
        if (now.key !== before.key) await this.useOwnLease(now);
      } else {
        this.log.warn(`this node's lease ${stored.key} was changed by someone else: writing this node's value back`);
        await this.keeper!.update(mine);
      }
      this.applied(revision);
      return;
    }
    if (this.setUpDone) this.metrics.leaseEvents++;
    this.peers.set(stored.key, stored);
    await this.backend!.applyPeer(stored.key, stored.lease, options);
    this.applied(revision);
  }

  private async applyDelete(key: string, revision: number): Promise<void> {
    if (key === this.keeper!.own?.key) {
      this.log.warn(`this node's lease ${key} was deleted: acquiring it again`);
      await this.reacquire();
      this.applied(revision);
      return;
    }
    this.metrics.leaseEvents++;
    this.peers.delete(key);
    await this.backend!.applyPeer(key, undefined);
    this.applied(revision);
  }

  private async reacquire(): Promise<void> {
    const before = this.keeper!.own!;
    const now = await this.retrying("acquire the lease again", () => this.keeper!.reacquire());
    if (describeSubnets(now.subnets) !== describeSubnets(before.subnets)) {
      this.log.error(
        `this node's subnet changed from ${describeSubnets(before.subnets)} to ${describeSubnets(now.subnets)}: ` +
          "pods keep their old addresses until they are restarted",
      );
      await this.useOwnLease(now);
    }
  }

  /** After a compaction: every lease listed anew, compared with what is programmed, the watch started after the listing. */
  private async relist(): Promise<void> {
    this.watch?.close();
    const { leases, revision } = await this.retrying("list the leases", () => this.registry!.list());
    const seen = new Set<string>();
    let ownSeen = false;
    for (const stored of leases) {
      seen.add(stored.key);
      if (stored.key === this.keeper!.own?.key) ownSeen = true;
      const known = this.peers.get(stored.key);
      if (!known || known.modRevision !== stored.modRevision) await this.applyPut(stored, revision);
    }
    for (const key of [...this.peers.keys()]) if (!seen.has(key)) await this.applyDelete(key, revision);
    if (!ownSeen) await this.applyDelete(this.keeper!.own!.key, revision);
    this.applied(revision);
    this.startWatch(revision + 1);
  }

  // --- the kernel ------------------------------------------------------------------------------

  private onKernelNotice(notice: KernelNotice): void {
    if (this.stopping) return;
    if (notice.kind === "lost") return this.requestResync();
    if (notice.kind === "address" && notice.index === this.external?.index) return this.requestExternalCheck();
    if (notice.kind === "link" && notice.index === this.external?.index) this.requestExternalCheck();
    const repair = this.backend?.repairFor(notice);
    if (repair === "resync") return this.requestResync();
    if (repair && !this.pendingRepairs.has(repair.peer)) {
      this.pendingRepairs.add(repair.peer);
      this.enqueue(async () => {
        this.pendingRepairs.delete(repair.peer);
        this.log.warn(`restoring what was removed or changed of ${repair.peer}'s entries`);
        await this.backend!.repair(repair.peer);
      });
    }
  }

  private requestResync(): void {
    if (this.resyncPending || this.stopping) return;
    this.resyncPending = true;
    this.enqueue(async () => {
      this.resyncPending = false;
      const repairs = await this.backend!.resync();
      this.metrics.resyncs++;
      this.metrics.resyncRepairs += repairs;
      if (repairs > 0) this.log.warn(`resync: ${repairs} routes, neighbours or fdb entries were missing, changed or stale, and are put right`);
    });
  }

  /** The external interface's addresses changed: a new public address is announced, and the VTEP follows it. */
  private requestExternalCheck(): void {
    if (this.externalCheckPending || this.stopping) return;
    this.externalCheckPending = true;
    this.enqueue(async () => {
      this.externalCheckPending = false;
      let next: ExternalInterface;
      try {
        next = await this.chooseExternal();
      } catch (err) {
        this.log.warn(`the external interface has no usable address now (${(err as Error).message}): keeping the lease as it is`);
        return;
      }
      const ext = this.external!;
      if (next.extAddr === ext.extAddr && next.extV6Addr === ext.extV6Addr && next.ifaceAddr === ext.ifaceAddr && next.mtu === ext.mtu) return;
      this.log.warn(
        `the external interface changed: public address ${ext.extAddr ?? ext.extV6Addr} -> ${next.extAddr ?? next.extV6Addr}; updating the VTEP and the lease`,
      );
      Object.assign(ext, next);
      this.reconnectEtcd();
      await this.backend!.resync();
      await this.retrying("update the lease", () => this.keeper!.update(this.leaseAttrs()));
    });
  }

  /**
   * A new connection to etcd: the node's address changed, and a connection from the old one would
   * only be found dead after its keep-alive pings went unanswered. The watch resumes after the last
   * revision applied.
   */
  private reconnectEtcd(): void {
    const old = this.client!;
    this.client = new EtcdClient(etcdClientOptions(this.flags));
    this.registry!.client = this.client;
    this.keeper!.dropKeepAlive();
    this.watch?.close();
    this.startWatch(this.metrics.watchRevision + 1);
    old.close();
  }

  /** Stops watching and serving; the data path (device, routes, fdb entries, rules, lease) stays. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.watch?.close();
    this.stopKernelWatch?.();
    if (this.backend instanceof UdpBackend) await this.backend.close();
    this.keeper?.stop();
    // A change under way finishes (it is one netlink request or etcd call); a retry loop waiting
    // for etcd is not waited out.
    await Promise.race([this.queue, sleep(STOP_WAIT_MS)]);
    this.client?.close();
    this.nl?.close();
    await new Promise<void>((r) => (this.health ? this.health.close(() => r()) : r()));
  }
}

/** An etcd error the agent waits out (no answer, no leader, a deadline), as opposed to one that needs the operator. */
export function isEtcdUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  // gRPC: DEADLINE_EXCEEDED 4, UNAVAILABLE 14, UNKNOWN 2 (a broken connection), CANCELLED 1.
  return typeof code === "number" && [1, 2, 4, 14].includes(code);
}
