import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { all, command, rootUser } from "../../test/helpers/prerequisites.js";
import { startEtcdMember, type EtcdMember } from "../../test/helpers/etcd-member.js";
import type { TestNetns } from "../../test/helpers/netns.js";
import type { NetnsProcess } from "../../test/helpers/netns-process.js";
import { EtcdClient, EtcdError, type WatchEvent } from "./client.js";

const needed = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"));

/** Polls `check` every 50 ms until it holds, failing after `ms`. */
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One etcd member in its own namespace, reached from the test over a veth pair on a random /30. */
describe.skipIf(needed.skip)(needed.title("etcd client against a real etcd member"), () => {
  let member: EtcdMember | undefined;
  let etcd: NetnsProcess | undefined;
  let ns: TestNetns | undefined;
  let dir: string | undefined;
  let endpoint = "";
  let tlsEndpoint = "";
  const clients: EtcdClient[] = [];

  const etcdctl = (...args: string[]) => member!.etcdctl(...args);
  const client = (options: Partial<ConstructorParameters<typeof EtcdClient>[0]> = {}) => {
    const c = new EtcdClient({ endpoints: [endpoint], timeoutMs: 3000, ...options });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    member = await startEtcdMember({ tls: true, etcdArgs: ["--auth-token-ttl", "1"] });
    ({ process: etcd, ns, dir, endpoint, tlsEndpoint } = member);
  }, 30_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await member?.stop();
  }, 15_000);

  it("puts, ranges a prefix at a revision, and creates a key only when absent", async () => {
    const c = client();
    const first = await c.put("/range/a", "1");
    await c.put("/range/b", "2");
    await c.put("/rangeX", "not under the prefix");
    await c.put("/range/a", "3");
    const now = await c.range("/range/", { prefix: true });
    expect(now.kvs.map((kv) => [kv.key, kv.value])).toEqual([
      ["/range/a", "3"],
      ["/range/b", "2"],
    ]);
    const then = await c.range("/range/", { prefix: true, revision: first });
    expect(then.kvs.map((kv) => [kv.key, kv.value])).toEqual([["/range/a", "1"]]);
    expect((await c.range("/range/a")).kvs).toHaveLength(1);

    const created = await c.createIfAbsent("/create/k", "mine");
    expect(created.created).toBe(true);
    const lost = await c.createIfAbsent("/create/k", "theirs");
    expect(lost.created).toBe(false);
    expect((await c.range("/create/k")).kvs[0]!.value).toBe("mine");
  });

  it("deletes a key only when it is unchanged since it was read", async () => {
    const c = client();
    await c.put("/cas/k", "old");
    const read = (await c.range("/cas/k")).kvs[0]!;
    await c.put("/cas/k", "changed by another writer");
    expect(await c.deleteIfUnchanged("/cas/k", read.modRevision)).toBe(false);
    expect((await c.range("/cas/k")).kvs[0]!.value).toBe("changed by another writer");
    const now = (await c.range("/cas/k")).kvs[0]!;
    expect(await c.deleteIfUnchanged("/cas/k", now.modRevision)).toBe(true);
    expect((await c.range("/cas/k")).kvs).toHaveLength(0);
  });

  it("grants, keeps alive, reads and revokes a lease holding a key", async () => {
    const c = client();
    const lease = await c.leaseGrant(60);
    expect(lease.ttl).toBe(60);
    const { created } = await c.createIfAbsent("/lease/k", "v", { lease: lease.id });
    expect(created).toBe(true);
    expect((await c.range("/lease/k")).kvs[0]!.lease).toBe(lease.id);
    expect(BigInt(etcdctl("get", "/lease/k", "-w", "json").match(/"lease":(\d+)/)![1]!)).toBe(BigInt(lease.id));

    const keepAlive = c.leaseKeepAlive(lease.id);
    expect(await keepAlive.renew()).toBe(60);
    expect(await keepAlive.renew()).toBe(60);
    expect((await c.leaseTimeToLive(lease.id)).grantedTtl).toBe(60);

    await c.leaseRevoke(lease.id);
    expect((await c.range("/lease/k")).kvs).toEqual([]);
    expect((await c.leaseTimeToLive(lease.id)).ttl).toBe(-1);
    await expect(keepAlive.renew()).rejects.toThrow(/lease not found/);
    keepAlive.close();
    await expect(c.leaseRevoke(lease.id)).rejects.toThrow(/lease not found/);
  });

  it("watches a prefix from a revision: earlier events first, then new ones, in order", async () => {
    const c = client();
    const start = await c.put("/watch/a", "1");
    await c.put("/watch/b", "2");
    await c.put("/other", "x");
    const events: WatchEvent[] = [];
    const watch = c.watchPrefix("/watch/", start, (e) => events.push(e));
    try {
      await until("the two earlier events", () => events.length >= 3);
      etcdctl("del", "/watch/a");
      await c.put("/watch/c", "3");
      await until("four events", () => events.length >= 5);
      expect(events.map((e) => (e.type === "put" || e.type === "delete" ? `${e.type} ${e.kv.key}` : e.type))).toEqual([
        "watching",
        "put /watch/a",
        "put /watch/b",
        "delete /watch/a",
        "put /watch/c",
      ]);
    } finally {
      watch.close();
    }
  });

  it("reports a compacted start revision as its own event, and a range at it as ErrCompacted", async () => {
    const c = client();
    const old = await c.put("/compact/k", "1");
    const latest = await c.put("/compact/k", "2");
    etcdctl("compact", String(latest));
    const events: WatchEvent[] = [];
    const watch = c.watchPrefix("/compact/", old, (e) => events.push(e));
    try {
      await until("the compaction event", () => events.some((e) => e.type === "compacted"));
      expect(events.filter((e) => e.type !== "watching")).toEqual([{ type: "compacted", compactRevision: latest }]);
    } finally {
      watch.close();
    }
    const error = await c.range("/compact/", { prefix: true, revision: old }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EtcdError);
    expect((error as EtcdError).compacted).toBe(true);
  });

  it("reopens a watch and a keep-alive after etcd stopped answering, the watch from the revision after its last event", async () => {
    const c = client({ pingMs: 5000, pingTimeoutMs: 2000 });
    const start = await c.put("/restart/a", "1");
    const lease = await c.leaseGrant(60);
    const keepAlive = c.leaseKeepAlive(lease.id);
    expect(await keepAlive.renew()).toBe(60);
    const events: WatchEvent[] = [];
    const watch = c.watchPrefix("/restart/", start, (e) => events.push(e));
    try {
      await until("the first event", () => events.length >= 1);
      etcd!.signal("SIGSTOP");
      ns!.exec("ip", ["link", "set", "eth0", "down"]);
      await until("the watch to notice", () => events.some((e) => e.type === "reconnecting"), 60_000);
      etcd!.signal("SIGCONT");
      ns!.exec("ip", ["link", "set", "eth0", "up"]);
      etcdctl("put", "/restart/b", "2");
      await until("the event after reconnecting", () => events.some((e) => e.type === "put" && e.kv.key === "/restart/b"), 20_000);
      expect(events.filter((e) => e.type === "put").map((e) => (e.type === "put" ? e.kv.key : ""))).toEqual(["/restart/a", "/restart/b"]);
      // Accepted at the start and again after the reconnection: what tells a caller etcd is back.
      expect(events.filter((e) => e.type === "watching").length).toBeGreaterThanOrEqual(2);
      expect(await keepAlive.renew()).toBe(60);
    } finally {
      watch.close();
      keepAlive.close();
      etcd!.signal("SIGCONT");
      ns!.exec("ip", ["link", "set", "eth0", "up"]);
    }
  }, 90_000);

  it("authenticates with a user and password once auth is on, again when the token expired", async () => {
    etcdctl("user", "add", "root:rootpw");
    etcdctl("auth", "enable");
    try {
      const c = client({ auth: { username: "root", password: "rootpw" } });
      const written = await c.put("/auth/k", "v");
      expect((await c.range("/auth/k")).kvs[0]!.value).toBe("v");
      // The member's tokens live 1 s (--auth-token-ttl); the client must notice and authenticate anew.
      await new Promise((r) => setTimeout(r, 2500));
      expect((await c.range("/auth/k")).kvs[0]!.value).toBe("v");
      await new Promise((r) => setTimeout(r, 2500));
      const events: WatchEvent[] = [];
      const watch = c.watchPrefix("/auth/", written, (e) => events.push(e));
      try {
        await until("the watched event", () => events.some((e) => e.type === "put"));
        expect(events.filter((e) => e.type !== "reconnecting" && e.type !== "watching")).toMatchObject([{ type: "put", kv: { key: "/auth/k" } }]);
      } finally {
        watch.close();
      }
      const anonymous = client();
      await expect(anonymous.range("/auth/k")).rejects.toThrow(/user name is empty|permission denied/);
      const wrong = client({ auth: { username: "root", password: "nope" } });
      await expect(wrong.range("/auth/k")).rejects.toThrow(/authentication failed/);
    } finally {
      etcdctl("--user", "root:rootpw", "auth", "disable");
    }
  });

  it("speaks TLS with a client certificate, and refuses a server its CA did not sign", async () => {
    const file = (name: string) => readFileSync(join(dir!, name));
    // The endpoint is an address: no server name goes out (Node.js would warn, Bun refuse).
    expect(tlsEndpoint).toMatch(/^https:\/\/\d+\.\d+\.\d+\.\d+:\d+$/);
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => warnings.push(`${w.code ?? ""} ${w.message}`);
    process.on("warning", onWarning);
    const c = client({ endpoints: [tlsEndpoint], tls: { ca: file("ca.pem"), cert: file("client.pem"), key: file("client.key") } });
    try {
      await c.put("/tls/k", "v");
      expect((await c.range("/tls/k")).kvs[0]!.value).toBe("v");
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings.filter((w) => /ServerName|DEP0123/.test(w))).toEqual([]);
    const noClientCert = client({ endpoints: [tlsEndpoint], tls: { ca: file("ca.pem") } });
    await expect(noClientCert.range("/tls/k")).rejects.toThrow(EtcdError);
    const otherCa = client({ endpoints: [tlsEndpoint], tls: { ca: file("client.pem"), cert: file("client.pem"), key: file("client.key") } });
    await expect(otherCa.range("/tls/k")).rejects.toThrow(EtcdError);
  });

  it("works bundled by esbuild as the programs are, alone in a directory without node_modules", async () => {
    const { build } = await import("esbuild");
    const entry = `
      import { EtcdClient } from "./client.ts";
      (async () => {
        const c = new EtcdClient({ endpoints: [process.argv[2]], timeoutMs: 3000 });
        const lease = await c.leaseGrant(30);
        const { created } = await c.createIfAbsent("/bundled/k", "v", { lease: lease.id });
        const { kvs } = await c.range("/bundled/", { prefix: true });
        await c.leaseRevoke(lease.id);
        c.close();
        console.log(JSON.stringify({ created, kvs: kvs.map((kv) => [kv.key, kv.value, kv.lease === lease.id]) }));
      })();
    `;
    const bundle = join(dir!, "bundled", "smoke.cjs");
    await build({
      stdin: { contents: entry, resolveDir: import.meta.dirname, loader: "ts" },
      bundle: true,
      platform: "node",
      target: "node20",
      format: "cjs",
      minifySyntax: true,
      legalComments: "none",
      outfile: bundle,
      logLevel: "error",
    });
    const output = execFileSync("env", ["-i", process.execPath, bundle, endpoint], { cwd: join(dir!, "bundled"), encoding: "utf8", timeout: 20_000 });
    expect(JSON.parse(output)).toEqual({ created: true, kvs: [["/bundled/k", "v", true]] });
  });

  it("refuses endpoints it cannot use, naming them", () => {
    expect(() => new EtcdClient({ endpoints: [] })).toThrow(/no endpoint/);
    expect(() => new EtcdClient({ endpoints: ["unix:///x"] })).toThrow(/neither http nor https/);
    expect(() => new EtcdClient({ endpoints: ["http://10.0.0.1:2379", "https://10.0.0.2:2379"] })).toThrow(/mix/);
  });
});
