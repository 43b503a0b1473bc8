import { Ajv } from "ajv";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { CompiledValidator } from "../../lib/cni/config.js";
import { EtcdClient } from "../../lib/etcd/client.js";
import { parseCidr } from "../../lib/ip/ip.js";
import { LeaseKeeper, type LeaseKeeperOptions } from "../../agent/lease-keeper.js";
import type { LeaseAttrs } from "../../agent/lease.js";
import type { Logger } from "../../agent/log.js";
import { AgentMetrics } from "../../agent/metrics.js";
import { agentNetworkConfigSchema } from "../../agent/network-config.schema.js";
import { parseNetworkConfig } from "../../agent/network-config.js";
import { SubnetRegistry, type LeaseEvent } from "../../agent/subnet-registry.js";
import { startEtcdMember, type EtcdMember } from "../helpers/etcd-member.js";
import { uniqueName } from "../helpers/netns.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";

const needed = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"));
const validate: CompiledValidator = new Ajv({ useDefaults: true, strict: true, allErrors: false }).compile(agentNetworkConfigSchema);
const config = (c: unknown) => parseNetworkConfig(JSON.stringify(c), validate, "/coreos.com/network/config");
const NETWORK = config({ Network: "10.5.0.0/16", Backend: { Type: "vxlan" } });

const vxlanAttrs = (publicIP: string, mac = "c6:d2:32:6f:8f:44"): LeaseAttrs => ({
  publicIP,
  publicIPv6: null,
  backendType: "vxlan",
  backendData: { VNI: 1, VtepMAC: mac },
});

/** A Logger keeping its lines, severity first. */
function collectingLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`I ${m}`), warn: (m) => lines.push(`W ${m}`), error: (m) => lines.push(`E ${m}`) };
}

describe.skipIf(needed.skip)(needed.title("LeaseKeeper and SubnetRegistry against a real etcd member"), () => {
  let member: EtcdMember | undefined;
  const clients: EtcdClient[] = [];
  const keepers: LeaseKeeper[] = [];
  const etcdctl = (...args: string[]) => member!.etcdctl(...args);

  beforeAll(async () => {
    member = await startEtcdMember();
  }, 40_000);
  afterEach(() => {
    for (const k of keepers.splice(0)) k.stop();
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await member?.stop();
  }, 15_000);

  /** A registry on a fresh prefix (one per test), and keepers on it. */
  function setup(prefix = `/${uniqueName("weft-")}/network`) {
    const client = new EtcdClient({ endpoints: [member!.endpoint], timeoutMs: 3000 });
    clients.push(client);
    const metrics = new AgentMetrics();
    const registry = new SubnetRegistry(client, prefix, metrics);
    const keeper = (options: Partial<LeaseKeeperOptions> = {}) => {
      const log = collectingLog();
      const k = new LeaseKeeper({ registry, config: NETWORK, renewMarginMinutes: 60, ...options, log });
      keepers.push(k);
      return Object.assign(k, { log });
    };
    const get = (key: string) => etcdctl("get", key, "--print-value-only").trimEnd();
    const leaseOf = (key: string) => BigInt(etcdctl("get", key, "-w", "json").match(/"lease":(\d+)/)?.[1] ?? "0");
    return { client, registry, metrics, keeper, prefix, get, leaseOf };
  }
  const etcdLeaseCount = () =>
    etcdctl("lease", "list")
      .split("\n")
      .filter((l) => /^[0-9a-f]+$/.test(l.trim())).length;

  it("retries a lost creation race: two nodes choosing the same subnet both end up with a lease, on different subnets", async () => {
    const { keeper } = setup();
    const a = keeper({ random: () => 0 });
    const b = keeper({ random: () => 0 });
    const [la, lb] = await Promise.all([a.acquire(vxlanAttrs("192.168.64.1"), []), b.acquire(vxlanAttrs("192.168.64.2"), [])]);
    expect(la.key).not.toBe(lb.key);
    const losers = [a, b].filter((k) => k.log.lines.some((l) => /^W another node created \S+ first \(attempt 1\): choosing again$/.test(l)));
    expect(losers).toHaveLength(1);
  });

  it("writes flanneld's key and value byte for byte, on an etcd lease of 24 h", async () => {
    const { keeper, registry, prefix, get, leaseOf } = setup();
    const k = keeper({ random: () => 0 });
    const lease = await k.acquire(vxlanAttrs("192.168.64.3"));
    expect(lease).toEqual({ key: `${prefix}/subnets/10.5.1.0-24`, subnets: { ipv4: parseCidr("10.5.1.0/24") }, reason: "free" });
    expect(etcdctl("get", `${prefix}/subnets/`, "--prefix", "--keys-only").trim()).toBe(`${prefix}/subnets/10.5.1.0-24`);
    expect(get(lease.key)).toBe(
      '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
    );
    const id = leaseOf(lease.key);
    expect(id).not.toBe(0n);
    const { grantedTtl, ttl } = await registry.timeToLive(String(id));
    expect(grantedTtl).toBe(86400);
    expect(ttl).toBeGreaterThan(86390);
    expect(etcdctl("lease", "timetolive", id.toString(16))).toMatch(/granted with TTL\(86400s\)/);

    const hostGw = keeper({ config: config({ Network: "10.6.0.0/16", Backend: { Type: "host-gw" } }), random: () => 0 });
    const gw = await hostGw.acquire({ publicIP: "192.168.64.4", publicIPv6: null, backendType: "host-gw", backendData: null });
    expect(get(gw.key)).toBe('{"PublicIP":"192.168.64.4","PublicIPv6":null,"BackendType":"host-gw","BackendData":null}');
  });

  it("takes over a restarted node's lease (same subnet, own-lease) and leaves etcd ONE etcd lease for it", async () => {
    const { keeper, leaseOf } = setup();
    const before = etcdLeaseCount();
    const first = await keeper().acquire(vxlanAttrs("192.168.64.5"));
    const firstEtcdLease = leaseOf(first.key);
    keepers[0]!.stop();
    expect(etcdLeaseCount()).toBe(before + 1);
    const again = await keeper().acquire(vxlanAttrs("192.168.64.5", "aa:bb:cc:dd:ee:01"));
    expect(again).toEqual({ ...first, reason: "own-lease" });
    expect(leaseOf(again.key)).not.toBe(firstEtcdLease);
    expect(etcdLeaseCount()).toBe(before + 1);
    expect(etcdctl("lease", "timetolive", firstEtcdLease.toString(16))).toMatch(/already expired/);
  });

  it("takes over a reservation (an operator's key without an etcd lease) and leaves it without one", async () => {
    const { keeper, prefix, get, leaseOf } = setup();
    const key = `${prefix}/subnets/10.5.77.0-24`;
    etcdctl("put", key, '{"PublicIP":"192.168.64.6"}');
    const before = etcdLeaseCount();
    const lease = await keeper().acquire(vxlanAttrs("192.168.64.6"));
    expect(lease).toEqual({ key, subnets: { ipv4: parseCidr("10.5.77.0/24") }, reason: "own-lease" });
    expect(leaseOf(key)).toBe(0n);
    expect(get(key)).toContain('"BackendType":"vxlan"');
    expect(etcdLeaseCount()).toBe(before);
  });

  // Bug (see /tmp/helpers/H5-agent-bugs.md): update() puts the value on an etcd lease even when the
  // key is a reservation, so a new public address (or a value written back over an operator's edit)
  // turns the reservation into a lease that expires in 24 h. Marked `fails` until update() keeps "0".
  it("keeps a reservation without an etcd lease when its value is updated (a new public address)", async () => {
    const { keeper, prefix, leaseOf } = setup();
    const key = `${prefix}/subnets/10.5.78.0-24`;
    etcdctl("put", key, '{"PublicIP":"192.168.64.16"}');
    const k = keeper();
    await k.acquire(vxlanAttrs("192.168.64.16"));
    await k.update(vxlanAttrs("192.168.64.16", "aa:bb:cc:dd:ee:02"));
    expect(etcdctl("get", key, "--print-value-only")).toContain("aa:bb:cc:dd:ee:02");
    expect(leaseOf(key)).toBe(0n);
  });

  it("deletes this node's lease when it no longer fits the network config, and acquires one that does", async () => {
    const { keeper, prefix } = setup();
    const outside = `${prefix}/subnets/10.9.1.0-24`;
    etcdctl("put", outside, '{"PublicIP":"192.168.64.13","PublicIPv6":null,"BackendType":"vxlan","BackendData":null}');
    const k = keeper({ random: () => 0 });
    const lease = await k.acquire(vxlanAttrs("192.168.64.13"));
    expect(lease).toEqual({ key: `${prefix}/subnets/10.5.1.0-24`, subnets: { ipv4: parseCidr("10.5.1.0/24") }, reason: "free" });
    expect(etcdctl("get", outside).trim()).toBe("");
    expect(k.log.lines).toContain(`I deleting this node's lease ${outside}: it does not fit the network config any more`);
  });

  it("reuses the previous subnet when it is free, not when another lease overlaps it", async () => {
    const { keeper, prefix } = setup();
    const previous = { ipv4: parseCidr("10.5.42.0/24") };
    const reused = await keeper({ previous }).acquire(vxlanAttrs("192.168.64.7"));
    expect(reused).toEqual({ key: `${prefix}/subnets/10.5.42.0-24`, subnets: previous, reason: "previous" });
    const other = await keeper({ previous, random: () => 0 }).acquire(vxlanAttrs("192.168.64.8"));
    expect(other.reason).toBe("free");
    expect(other.key).toBe(`${prefix}/subnets/10.5.1.0-24`);

    // A wider lease an operator put over another previous subnet overlaps it without being equal.
    etcdctl("put", `${prefix}/subnets/10.5.50.0-23`, '{"PublicIP":"192.168.64.98","PublicIPv6":null,"BackendType":"vxlan","BackendData":null}');
    const overlapped = await keeper({ previous: { ipv4: parseCidr("10.5.51.0/24") }, random: () => 0 }).acquire(vxlanAttrs("192.168.64.97"));
    expect(overlapped).toEqual({ key: `${prefix}/subnets/10.5.2.0-24`, subnets: { ipv4: parseCidr("10.5.2.0/24") }, reason: "free" });
  });

  it("reacquires: the same subnet after its key was deleted, a new one when another node took it, a new etcd lease after a revocation", async () => {
    const { keeper, leaseOf, get } = setup();
    const k = keeper({ random: () => 0 });
    const first = await k.acquire(vxlanAttrs("192.168.64.9"));
    const etcdLease = leaseOf(first.key);

    etcdctl("del", first.key);
    expect(await k.reacquire()).toEqual({ ...first, reason: "same-subnet" });
    expect(leaseOf(first.key)).toBe(etcdLease);

    etcdctl("del", first.key);
    etcdctl(
      "put",
      first.key,
      '{"PublicIP":"192.168.64.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:aa:aa:aa:aa:aa"}}',
    );
    const moved = await k.reacquire();
    expect(moved.key).not.toBe(first.key);
    expect(k.log.lines).toContain(`W ${first.key} was taken by another node meanwhile: acquiring a new subnet`);
    expect(get(first.key)).toContain("192.168.64.99");

    etcdctl("lease", "revoke", leaseOf(moved.key).toString(16));
    expect(etcdctl("get", moved.key).trim()).toBe("");
    const revived = await k.reacquire();
    expect(revived).toEqual({ ...moved, reason: "same-subnet" });
    expect(leaseOf(moved.key)).not.toBe(etcdLease);
    expect(leaseOf(moved.key)).not.toBe(0n);
    expect(k.log.lines.some((l) => /^W etcd lease \d+ is gone \(expired or revoked\): granting a new one$/.test(l))).toBe(true);
  });

  it("says, when every subnet is leased, how many the network holds and which are taken", async () => {
    const small = config({ Network: "10.5.0.0/22", SubnetLen: 24, Backend: { Type: "vxlan" } });
    const { keeper } = setup();
    const taken: string[] = [];
    let error: unknown;
    for (let node = 1; node <= 8 && error === undefined; node++) {
      try {
        taken.push((await keeper({ config: small }).acquire(vxlanAttrs(`192.168.65.${node}`))).key);
      } catch (err) {
        error = err;
      }
    }
    // SubnetMin skips the network's first subnet, as flanneld's default.
    expect(taken.map((key) => key.replace(/.*\//, "")).sort()).toEqual(["10.5.1.0-24", "10.5.2.0-24", "10.5.3.0-24"]);
    expect((error as Error).message).toMatch(
      /^no free subnet in .*: it holds 3 subnets of \/24 from 10\.5\.1\.0 to 10\.5\.3\.0, all taken by 3 leases \(10\.5\.1\.0-10\.5\.3\.255\)/,
    );
  });

  it("renews its etcd lease over a keep-alive before the TTL runs out (a short TTL)", async () => {
    const { keeper, registry, leaseOf } = setup();
    // TTL 6 s, margin 0.05 min = 3 s: renewed 3 s after the grant.
    const k = keeper({ ttlSeconds: 6, renewMarginMinutes: 0.05 });
    const lease = await k.acquire(vxlanAttrs("192.168.64.10"));
    const id = leaseOf(lease.key);
    await waitUntil("two renewals", 15_000, () =>
      k.log.lines.filter((l) => l.startsWith(`I renewed etcd lease ${id} `)).length >= 2 ? true : undefined,
    );
    expect(k.log.lines).toContain(`I renewed etcd lease ${id} of ${lease.key} for 6 s`);
    // Past twice the TTL, the key is still there on the same etcd lease.
    expect(leaseOf(lease.key)).toBe(id);
    expect((await registry.timeToLive(String(id))).ttl).toBeGreaterThan(0);
  }, 30_000);

  it("stops renewing an etcd lease that was revoked, and renews the new one after reacquiring", async () => {
    const { keeper, leaseOf } = setup();
    const k = keeper({ ttlSeconds: 6, renewMarginMinutes: 0.05 });
    const lease = await k.acquire(vxlanAttrs("192.168.64.12"));
    const first = leaseOf(lease.key);
    etcdctl("lease", "revoke", first.toString(16));
    await waitUntil("the renewal to find the lease gone", 10_000, () =>
      k.log.lines.includes(`W etcd lease ${first} is gone: the lease will be acquired again`) ? true : undefined,
    );
    expect(k.log.lines.filter((l) => l.includes(`renewing etcd lease ${first} failed`))).toEqual([]);
    expect(await k.reacquire()).toEqual({ ...lease, reason: "same-subnet" });
    const second = leaseOf(lease.key);
    expect(second).not.toBe(first);
    await waitUntil("the new lease renewed", 10_000, () =>
      k.log.lines.some((l) => l.startsWith(`I renewed etcd lease ${second} `)) ? true : undefined,
    );
  }, 30_000);

  it("lists and watches leases, telling unreadable keys apart, and counts every request", async () => {
    const { registry, metrics, prefix } = setup();
    const value = '{"PublicIP":"192.168.64.11","PublicIPv6":null,"BackendType":"host-gw","BackendData":null}';
    etcdctl("put", `${prefix}/config`, '{"Network":"10.5.0.0/16"}');
    etcdctl("put", `${prefix}/subnets/10.5.4.0-24`, value);
    etcdctl("put", `${prefix}/subnets/not-a-subnet`, value);
    etcdctl("put", `${prefix}/subnets/10.5.5.0-24`, "{not json");
    expect(await registry.config()).toBe('{"Network":"10.5.0.0/16"}');
    const listed = await registry.list();
    expect(listed.leases.map((l) => [l.key, l.lease.attrs.publicIP, l.etcdLease])).toEqual([[`${prefix}/subnets/10.5.4.0-24`, "192.168.64.11", "0"]]);
    expect(listed.unreadable.map((u) => u.key).sort()).toEqual([`${prefix}/subnets/10.5.5.0-24`, `${prefix}/subnets/not-a-subnet`]);
    expect(listed.unreadable.find((u) => u.key.endsWith("not-a-subnet"))!.problem).toBe("the key does not name a subnet (<ip>-<length>)");
    expect(metrics.etcdRequests).toBe(2);

    const events: LeaseEvent[] = [];
    const watch = registry.watch(listed.revision + 1, (e) => events.push(e));
    try {
      etcdctl("put", `${prefix}/subnets/10.5.6.0-24`, value);
      etcdctl("put", `${prefix}/subnets/10.5.6.0-25`, "[]");
      etcdctl("del", `${prefix}/subnets/10.5.4.0-24`);
      etcdctl("put", `${prefix}/config`, "{}");
      await waitUntil("three lease events", 5000, () => (events.filter((e) => "revision" in e).length >= 3 ? true : undefined), 50);
      const [put, unreadable, deleted] = events.filter((e) => "revision" in e);
      expect([put?.type, unreadable?.type, deleted?.type]).toEqual(["put", "unreadable", "delete"]);
      expect(put?.type === "put" && [put.stored.key, put.stored.lease.attrs.publicIP]).toEqual([`${prefix}/subnets/10.5.6.0-24`, "192.168.64.11"]);
      expect(deleted?.type === "delete" && deleted.key).toBe(`${prefix}/subnets/10.5.4.0-24`);
      expect(events.some((e) => e.type === "watching")).toBe(true);
      expect(metrics.etcdRequests).toBe(3);
    } finally {
      watch.close();
    }
  });
});
