import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { pathWithTestNode } from "../helpers/executables.js";
import { addressesOf, makeSandbox, run, runAsync, snapshot, WEFT, type Call, type Sandbox } from "../helpers/host-local-harness.js";

let sandbox: Sandbox;
let children: ChildProcess[] = [];

beforeEach(() => {
  sandbox = makeSandbox();
});

afterEach(() => {
  for (const child of children) child.kill("SIGKILL");
  children = [];
  sandbox.remove();
});

const NET = "weftnet";

function config(ipam: Record<string, unknown> = {}, extra: Record<string, unknown> = {}, version = "1.1.0") {
  return {
    cniVersion: version,
    name: NET,
    type: "bridge",
    ...extra,
    ipam: { type: "host-local", dataDir: join(sandbox.root, "data"), ranges: [[{ subnet: "10.88.0.0/24" }], [{ subnet: "fd88::/120" }]], ...ipam },
  };
}

function store(): string {
  return join(sandbox.root, "data", NET);
}

function weft(call: Call) {
  return run(WEFT, call, sandbox.env);
}

function add(containerId: string, conf = config(), ifName = "eth0", args?: string) {
  return weft({ command: "ADD", containerId, ifName, config: conf, ...(args ? { args } : {}) });
}

function del(containerId: string, conf = config(), ifName = "eth0") {
  return weft({ command: "DEL", containerId, ifName, config: conf });
}

describe("host-local ADD", () => {
  it("hands out one address per range set and records it as the reference does", () => {
    const out = add("c1");
    expect(out.status).toBe(0);
    expect(out.json).toEqual({
      cniVersion: "1.1.0",
      ips: [
        { address: "10.88.0.2/24", gateway: "10.88.0.1" },
        { address: "fd88::2/120", gateway: "fd88::1" },
      ],
    });
    expect(snapshot(store())).toEqual({
      "10.88.0.2": { mode: "644", content: JSON.stringify("c1\r\neth0") },
      "fd88::2": { mode: "644", content: JSON.stringify("c1\r\neth0") },
      last_reserved_ip: undefined,
      "last_reserved_ip.0": { mode: "644", content: JSON.stringify("10.88.0.2") },
      "last_reserved_ip.1": { mode: "644", content: JSON.stringify("fd88::2") },
      lock: { mode: "750", content: JSON.stringify("") },
    });
    expect((statSync(store()).mode & 0o777).toString(8)).toBe("755");
  });

  it("continues after the last reserved address, wraps around and skips the gateway", () => {
    const conf = config({ ranges: [[{ subnet: "10.88.0.0/29", gateway: "10.88.0.4" }]] });
    const got = ["a", "b", "c", "d", "e"].map((id) => addressesOf(add(id, conf))[0]);
    expect(got).toEqual(["10.88.0.1/29", "10.88.0.2/29", "10.88.0.3/29", "10.88.0.5/29", "10.88.0.6/29"]);
    expect(del("b", conf).status).toBe(0);
    expect(addressesOf(add("f", conf))).toEqual(["10.88.0.2/29"]);
  });

  it("prints the result in the config's version", () => {
    const v020 = add("old", config({ ranges: [[{ subnet: "10.88.0.0/24" }]], routes: [{ dst: "0.0.0.0/0" }] }, {}, "0.2.0"));
    expect(v020.json).toEqual({ cniVersion: "0.2.0", ip4: { ip: "10.88.0.2/24", gateway: "10.88.0.1", routes: [{ dst: "0.0.0.0/0" }] }, dns: {} });
    const v040 = add("mid", config({}, {}, "0.4.0"));
    expect(v040.json).toMatchObject({
      cniVersion: "0.4.0",
      ips: [
        { version: "4", address: "10.88.0.3/24" },
        { version: "6", address: "fd88::2/120" },
      ],
    });
  });

  it("returns routes and the dns of resolvConf", () => {
    const resolv = join(sandbox.root, "resolv.conf");
    writeFileSync(resolv, "nameserver 10.96.0.10\nsearch svc.cluster.local cluster.local\noptions ndots:5\n");
    const out = add("c1", config({ resolvConf: resolv, routes: [{ dst: "0.0.0.0/0" }, { dst: "fd88:1::/64", gw: "fd88::1" }] }));
    expect(out.json).toMatchObject({
      routes: [{ dst: "0.0.0.0/0" }, { dst: "fd88:1::/64", gw: "fd88::1" }],
      dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local", "cluster.local"], options: ["ndots:5"] },
    });
    const missing = add("c2", config({ resolvConf: join(sandbox.root, "nope") }));
    expect(missing.json).toMatchObject({ code: 7, msg: expect.stringContaining(`ipam.resolvConf ${join(sandbox.root, "nope")} cannot be read`) });
  });

  it("honours requested addresses from CNI_ARGS, args.cni.ips and runtimeConfig.ips", () => {
    expect(addressesOf(add("a", config(), "eth0", "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.88.0.77"))).toEqual(["10.88.0.77/24", "fd88::2/120"]);
    expect(addressesOf(add("b", config({}, { args: { cni: { ips: ["10.88.0.78", "fd88::78"] } } })))).toEqual(["10.88.0.78/24", "fd88::78/120"]);
    expect(addressesOf(add("c", config({}, { runtimeConfig: { ips: ["10.88.0.79/24"] } })))).toEqual(["10.88.0.79/24", "fd88::79/120"]);
    expect(readFileSync(join(store(), "last_reserved_ip.0"), "utf8")).toBe("10.88.0.79");
  });

  it("refuses a requested address that is taken, the gateway, or outside every range, and keeps nothing", () => {
    add("a", config(), "eth0", "IP=10.88.0.77");
    const before = snapshot(store());
    const taken = add("b", config(), "eth0", "IP=10.88.0.77");
    expect(taken.json).toMatchObject({
      code: 102,
      msg: "failed to allocate for range 0: requested IP address 10.88.0.77 is not available in range set 10.88.0.1-10.88.0.254",
      details: "it is reserved by container a interface eth0",
    });
    expect(add("b", config(), "eth0", "IP=10.88.0.1").json).toMatchObject({
      code: 102,
      msg: "failed to allocate for range 0: requested ip 10.88.0.1 is subnet's gateway",
    });
    expect(add("b", config(), "eth0", "IP=10.99.0.5").json).toMatchObject({ code: 102, msg: "failed to allocate all requested IPs: 10.99.0.5" });
    // Only the round-robin cursors moved (the last call reserved, then released, 10.88.0.78 and fd88::3).
    expect(snapshot(store())).toEqual({ ...before, "last_reserved_ip.0": expect.anything(), "last_reserved_ip.1": expect.anything() });
    expect(
      readdirSync(store())
        .filter((n) => /^(10\.|fd88)/.test(n))
        .sort(),
    ).toEqual(["10.88.0.77", "fd88::2"]);
  });

  it("refuses a second ADD of the same attachment, as the reference", () => {
    add("a");
    expect(add("a").json).toMatchObject({
      code: 102,
      msg: "failed to allocate for range 0: 10.88.0.2 has been allocated to a, duplicate allocation is not allowed",
    });
    // The same container on another interface is another attachment.
    expect(addressesOf(add("a", config(), "net1"))).toEqual(["10.88.0.3/24", "fd88::3/120"]);
  });

  it("names the full range set and releases what it reserved in the earlier sets", () => {
    const conf = config({ ranges: [[{ subnet: "10.88.0.0/24" }], [{ subnet: "fd88::/126" }]] });
    expect(add("a", conf).status).toBe(0);
    expect(add("b", conf).status).toBe(0);
    const full = add("c", conf);
    expect(full.json).toMatchObject({ code: 102, msg: "failed to allocate for range 1: no IP addresses available in range set: fd88::1-fd88::3" });
    expect(
      readdirSync(store())
        .filter((n) => n.startsWith("10.88."))
        .sort(),
    ).toEqual(["10.88.0.2", "10.88.0.3"]);
  });

  it("rejects bad configs with code 7 naming the field", () => {
    const out = add("a", config({ ranges: [[{ subnet: "10.88.0.0/24", gateway: "10.89.0.1" }]] }));
    expect(out.status).toBe(1);
    expect(out.json).toMatchObject({
      code: 7,
      msg: "invalid network config: ipam.ranges[0][0].gateway 10.89.0.1 is not in ipam.ranges[0][0].subnet 10.88.0.0/24",
    });
    expect(add("a", config({ ranges: [[{ subnet: "10.88.0.0/24", rangeEnd: 7 }]] })).json).toMatchObject({
      code: 7,
      msg: "invalid network config: ipam.ranges[0][0].rangeEnd must be string,null (got 7)",
    });
    expect(add("a", config({}, {}), "eth0", "FOO=1").json).toMatchObject({ code: 4, msg: "CNI_ARGS: unknown args [FOO]" });
  });

  it("fails with code 11 naming the lock when another process holds it past lockTimeoutMs", async () => {
    add("a");
    const holder = spawn("flock", ["--no-fork", "--exclusive", join(store(), "lock"), "sh", "-c", "echo locked; exec sleep 30"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(holder);
    await new Promise((resolve) => holder.stdout.once("data", resolve));
    const out = await runAsync(WEFT, { command: "ADD", containerId: "b", ifName: "eth0", config: config({ lockTimeoutMs: 300 }) }, sandbox.env);
    // It gave up while the holder (which sleeps 30 s) still held the lock, rather than wait it out;
    // a hang is caught by the test's timeout.
    expect(holder.exitCode).toBe(null);
    expect(out.json).toMatchObject({
      code: 11,
      msg: expect.stringContaining(`waiting for the lock on ${join(store(), "lock")}, held by pid ${holder.pid}`),
    });
    // DEL waits on the same lock.
    const delOut = await runAsync(WEFT, { command: "DEL", containerId: "a", ifName: "eth0", config: config({ lockTimeoutMs: 300 }) }, sandbox.env);
    expect(delOut.json).toMatchObject({ code: 11 });
    holder.kill("SIGKILL");
    await new Promise((resolve) => holder.once("exit", resolve));
    expect(add("b").status).toBe(0);
  });

  it("never leaves a partial reservation when killed in the middle of an ADD", async () => {
    const conf = config();
    expect(add("first", conf).status).toBe(0);
    const start = (i: number) => {
      const child = spawn(WEFT, [], {
        env: {
          PATH: pathWithTestNode("/usr/bin:/bin"),
          CNI_COMMAND: "ADD",
          CNI_CONTAINERID: `k${i}`,
          CNI_NETNS: "/x",
          CNI_IFNAME: "eth0",
          CNI_PATH: "/x",
          ...sandbox.env,
        },
        stdio: ["pipe", "ignore", "ignore"],
      });
      children.push(child);
      child.stdin.end(JSON.stringify(conf));
      let running = true;
      const end = new Promise<string>((resolve) =>
        child.once("exit", (code, signal) => {
          running = false;
          resolve(signal === "SIGKILL" ? "killed" : code === 0 ? "done" : "failed");
        }),
      );
      // Its temporary files show it has written its reservations and is about to link them.
      const prepared = async (count: number) => {
        while (running && readdirSync(store()).filter((n) => n.startsWith(`.weft-${child.pid}-`)).length < count) {
          await new Promise((r) => setImmediate(r));
        }
      };
      return { child, end, prepared };
    };

    // While another process holds the lock, each ADD is stopped with its files written: kill it there.
    const holder = spawn("flock", ["--no-fork", "--exclusive", join(store(), "lock"), "sh", "-c", "echo locked; exec sleep 30"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(holder);
    await new Promise((resolve) => holder.stdout.once("data", resolve));
    const stopped = [0, 1, 2, 3].map(start);
    for (const s of stopped) await s.prepared(2);
    for (const s of stopped) s.child.kill("SIGKILL");
    expect(await Promise.all(stopped.map((s) => s.end))).toEqual(["killed", "killed", "killed", "killed"]);
    holder.kill("SIGKILL");
    await new Promise((resolve) => holder.once("exit", resolve));

    // Then kills 0 ... 9 ms after the files appear, landing before, during or after the links.
    const swept: string[] = [];
    for (let i = 4; i < 14; i++) {
      const s = start(i);
      await s.prepared(1);
      await new Promise((r) => setTimeout(r, i - 4));
      s.child.kill("SIGKILL");
      swept.push(await s.end);
    }
    expect(swept).not.toContain("failed");

    for (const [name, state] of Object.entries(snapshot(store()))) {
      if (/^(10\.|fd88)/.test(name)) expect(state.content).toMatch(/^"(k\d+|first)\\r\\neth0"$/);
      else if (name.startsWith("last_reserved_ip")) expect(state.content).toMatch(/^"(10\.88\.0|fd88:)[0-9a-f.:]+"$/);
      else if (name !== "lock") expect(name).toMatch(/^\.weft-\d+-\d+\.tmp$/);
    }
    expect(add("after", conf).status).toBe(0);
    // GC removes what the killed processes left, and keeps the one attachment it is told of.
    expect(weft({ command: "GC", config: { ...conf, "cni.dev/valid-attachments": [{ containerID: "after", ifname: "eth0" }] } }).status).toBe(0);
    const left = snapshot(store());
    const reserved = Object.keys(left).filter((n) => /^(10\.|fd88)/.test(n));
    expect(reserved.map((n) => left[n]!.content)).toEqual([JSON.stringify("after\r\neth0"), JSON.stringify("after\r\neth0")]);
    expect(Object.keys(left).filter((n) => !reserved.includes(n))).toEqual(["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
  });
});

describe("host-local DEL", () => {
  it("releases by container id and interface, and is idempotent", () => {
    add("a");
    add("a", config(), "net1");
    expect(del("a").status).toBe(0);
    expect(del("a").stdout).toBe("");
    expect(
      Object.values(snapshot(store()))
        .filter((f) => f.content.includes("a\\r\\n"))
        .map((f) => f.content),
    ).toEqual([JSON.stringify("a\r\nnet1"), JSON.stringify("a\r\nnet1")]);
    expect(del("never-added").status).toBe(0);
  });

  it("falls back to files naming only the container id (plugins before v0.8.0)", () => {
    add("a");
    writeFileSync(join(store(), "10.88.0.50"), "legacy");
    writeFileSync(join(store(), "fd88::50"), "legacy\n");
    expect(del("legacy").status).toBe(0);
    expect(readdirSync(store()).sort()).toEqual(["10.88.0.2", "fd88::2", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
  });

  it("succeeds without creating anything when the network has no store, and with a config whose ranges no longer parse", () => {
    expect(del("a").status).toBe(0);
    expect(readdirSync(sandbox.root)).not.toContain("data");
    add("a");
    expect(del("a", config({ ranges: [[{ subnet: "10.88.0.0/33" }]] })).status).toBe(0);
    expect(readdirSync(store()).sort()).toEqual(["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
  });
});

describe("host-local CHECK", () => {
  function check(containerId: string, conf: Record<string, unknown> = config(), ifName = "eth0") {
    return weft({ command: "CHECK", containerId, ifName, config: conf });
  }

  it("passes for a live attachment and fails once it is released", () => {
    const result = add("a").json!;
    expect(check("a", { ...config(), prevResult: result }).status).toBe(0);
    expect(check("a", config(), "net1").json).toMatchObject({ code: 101, msg: "host-local: Failed to find address added by container a" });
    del("a");
    expect(check("a").json).toMatchObject({ msg: "host-local: Failed to find address added by container a" });
  });

  it("fails when prevResult lists an address the attachment does not hold, or a range set holds none", () => {
    add("a");
    add("b");
    const prevResult = { cniVersion: "1.1.0", ips: [{ address: "10.88.0.3/24" }, { address: "fd88::2/120" }] };
    expect(check("a", { ...config(), prevResult }).json).toMatchObject({
      msg: "host-local: prevResult address 10.88.0.3 is not reserved for container a interface eth0",
      details: "it is reserved by container b interface eth0",
    });
    const wider = config({ ranges: [[{ subnet: "10.88.0.0/24" }], [{ subnet: "fd88::/120" }], [{ subnet: "10.77.0.0/24" }]] });
    expect(check("a", wider).json).toMatchObject({
      msg: "host-local: container a interface eth0 holds no address in range set 2 (10.77.0.1-10.77.0.254)",
    });
  });
});

describe("host-local GC", () => {
  function gc(valid: unknown, conf = config()) {
    return weft({ command: "GC", config: valid === undefined ? conf : { ...conf, "cni.dev/valid-attachments": valid } });
  }

  it("releases every reservation whose attachment is not valid, and temporaries left by a crash", () => {
    add("keep");
    add("drop");
    add("keep", config(), "net1");
    writeFileSync(join(store(), "10.88.0.100"), "keep");
    writeFileSync(join(store(), "10.88.0.101"), "gone");
    writeFileSync(join(store(), "10.88.0.102"), "");
    writeFileSync(join(store(), ".weft-999999-0.tmp"), "x\r\neth0");
    const out = gc([{ containerID: "keep", ifname: "eth0" }]);
    expect(out.status).toBe(0);
    expect(out.stdout).toBe("");
    const left = snapshot(store());
    expect(Object.keys(left).sort()).toEqual(["10.88.0.100", "10.88.0.2", "fd88::2", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
    expect(left["10.88.0.2"]!.content).toBe(JSON.stringify("keep\r\neth0"));
  });

  it("releases everything for an empty list, accepts the older key, and refuses a request without either", () => {
    add("a");
    expect(gc(undefined).json).toMatchObject({ code: 7, msg: "invalid network config: GC needs cni.dev/valid-attachments" });
    expect(readdirSync(store())).toContain("10.88.0.2");
    expect(weft({ command: "GC", config: { ...config(), "cni.dev/attachments": [{ containerID: "a", ifname: "eth0" }] } }).status).toBe(0);
    expect(readdirSync(store())).toContain("10.88.0.2");
    expect(gc([]).status).toBe(0);
    expect(readdirSync(store()).sort()).toEqual(["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
    expect(gc(null).status).toBe(0);
  });

  it("needs a 1.1.0 config", () => {
    expect(gc([], config({}, {}, "1.0.0")).json).toMatchObject({ code: 1 });
  });
});

describe("host-local STATUS", () => {
  function status(conf: Record<string, unknown>) {
    return weft({ command: "STATUS", config: conf });
  }

  it("succeeds while every range set has a free address, and fails with 50 naming the full set", () => {
    const conf = config({ ranges: [[{ subnet: "10.88.0.0/24" }], [{ subnet: "fd88::/126" }]] });
    expect(status(conf).status).toBe(0);
    add("a", conf);
    expect(status(conf).status).toBe(0);
    add("b", conf);
    const out = status(conf);
    expect(out.status).toBe(1);
    expect(out.json).toMatchObject({ code: 50, msg: "no IP addresses available in range set 1: fd88::1-fd88::3" });
    del("a", conf);
    expect(status(conf).status).toBe(0);
  });

  it("reports an invalid config with code 7 and creates nothing", () => {
    expect(status(config({ ranges: [[{ subnet: "10.88.0.1/24" }]] })).json).toMatchObject({ code: 7 });
    expect(status(config()).status).toBe(0);
    expect(readdirSync(sandbox.root)).not.toContain("data");
  });
});
