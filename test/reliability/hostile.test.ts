import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bridgePlugin } from "../../plugins/bridge/plugin.js";
import type { NetConf } from "../../lib/cni/config.js";
import { dispatch, type Plugin } from "../../lib/cni/skel.js";
import { flannelPlugin } from "../../plugins/flannel/plugin.js";
import { loopbackPlugin } from "../../plugins/loopback/plugin.js";
import { portmapPlugin } from "../../plugins/portmap/plugin.js";
import { hostLocalPlugin } from "../../ipam/host-local/plugin.js";
import { record } from "./figures.js";
import { HOSTILE_MARKER, hostileNames } from "./random.js";
import { createNode, flannelConf, invoke, kernelLeftovers, SUBNET_ENV, type Node } from "./sandbox.js";
import { CNI_TYPES } from "../../plugins/registry.js";

/**
 * Hostile ids: container ids, interface names and network names with "/", "..", NUL,
 * newlines, 4,000 characters or shell characters are refused with code 4 or 7 before any handler
 * runs (in process, every plugin), and, through the executables under strace, before any of them
 * reaches a path, a netlink message or a command line. Then the symlink policy and file modes.
 */

let node: Node;
let tried = 0;
beforeAll(() => {
  node = createNode("hostile");
  writeFileSync(join(node.work, "subnet.env"), SUBNET_ENV);
});
afterAll(() => node?.remove());

/** Every verb handler replaced by one that records being reached: validation must stop first. */
function guarded(plugin: Plugin<NetConf>): { plugin: Plugin<NetConf>; reached: string[] } {
  const reached: string[] = [];
  const trap = (verb: string) => async () => {
    reached.push(verb);
    throw new Error(`${verb} handler reached`);
  };
  return { plugin: { ...plugin, add: trap("ADD"), del: trap("DEL"), check: trap("CHECK"), gc: trap("GC"), status: trap("STATUS") }, reached };
}

const PLUGINS: Array<[string, () => Plugin<NetConf>]> = [
  ["host-local", () => hostLocalPlugin()],
  ["bridge", () => bridgePlugin()],
  ["flannel", () => flannelPlugin()],
  ["portmap", () => portmapPlugin()],
  ["loopback", () => loopbackPlugin()],
];

const FIELDS = ["CNI_CONTAINERID", "CNI_IFNAME", "name"] as const;

function baseConf(type: string, name = "hostile-net"): Record<string, unknown> {
  return { cniVersion: "1.0.0", name, type, ipam: { type: "host-local", dataDir: join(node.work, "data"), subnet: "10.60.0.0/24" } };
}

describe("hostile names, in process: refused before any handler", () => {
  it.each(PLUGINS)("%s", async (type, make) => {
    const failures: string[] = [];
    for (const verb of ["ADD", "DEL", "CHECK"]) {
      for (const field of FIELDS) {
        for (const value of hostileNames()) {
          const { plugin, reached } = guarded(make());
          const env: Record<string, string> = {
            CNI_COMMAND: verb,
            CNI_CONTAINERID: "c1",
            CNI_NETNS: "/run/netns/none",
            CNI_IFNAME: "eth0",
            CNI_PATH: node.cniPath,
          };
          const conf = baseConf(type);
          if (field === "name") conf.name = value;
          else env[field] = value;
          let stdout = "";
          const code = await dispatch(plugin, {
            getenv: (n) => env[n],
            readStdin: () => Buffer.from(JSON.stringify(conf)),
            stdout: (t) => (stdout += t),
            stderr: () => undefined,
          });
          tried++;
          const err = JSON.parse(stdout || "{}") as { code?: number };
          const expected = field === "name" ? [7] : [4];
          if (code !== 1 || !expected.includes(err.code!) || reached.length) {
            failures.push(`${verb} ${field}=${JSON.stringify(value).slice(0, 40)}: exit ${code}, code ${err.code}, reached ${reached.join(",")}`);
          }
        }
      }
    }
    expect(failures).toEqual([]);
  });
});

describe("hostile names through the executables, under strace", () => {
  it("no hostile name reaches a file path, a socket message or an exec, in any plugin", () => {
    const trace = join(node.work, "trace");
    const leaks: string[] = [];
    const types = CNI_TYPES;
    let runs = 0;
    // Each name with the marker goes through every field, and through one plugin in three in turn.
    for (const [t, type] of types.entries()) {
      for (const field of FIELDS) {
        for (const [k, value] of hostileNames().entries()) {
          if (!value.includes(HOSTILE_MARKER) || value.includes("\u0000") || (k + t) % 3 !== 0) continue;
          const conf: Record<string, unknown> = { ...baseConf(type), subnetFile: join(node.work, "subnet.env"), dataDir: join(node.work, "flannel") };
          if (field === "name") conf.name = value;
          const env: Record<string, string> = {};
          if (field !== "name") env[field] = value;
          const out = invoke(node, {
            type,
            verb: "ADD",
            containerId: field === "CNI_CONTAINERID" ? value : "c1",
            ifName: field === "CNI_IFNAME" ? value : "eth0",
            netns: "/run/netns/none",
            config: conf,
            binary: "/usr/bin/strace",
            env: {},
            argv: ["-f", "-qq", "-s", "65536", "-e", "trace=%file,%network,%process", "-o", trace, join(node.cniPath, type)],
          });
          runs++;
          const code = (out.json as { code?: number } | undefined)?.code;
          if (out.status !== 1 || code !== (field === "name" ? 7 : 4))
            leaks.push(`${type} ${field}=${JSON.stringify(value).slice(0, 40)}: exit ${out.status} ${out.stdout.slice(0, 200)}`);
          const syscalls = readFileSync(trace, "utf8")
            .split("\n")
            .filter((l) => l.includes(HOSTILE_MARKER));
          if (syscalls.length) leaks.push(`${type} ${field}=${JSON.stringify(value).slice(0, 40)} reached: ${syscalls[0]!.slice(0, 300)}`);
        }
      }
    }
    tried += runs;
    console.log(`hostile names: ${tried} refusals checked (${runs} under strace through the executables)`);
    record("hostile", { tried, traced: runs, leaks: leaks.length });
    expect(leaks).toEqual([]);
    expect(existsSync(join(node.work, "data"))).toBe(false);
    expect(existsSync(join(node.work, "flannel"))).toBe(false);
    expect(kernelLeftovers(node)).toEqual([]);
  }, 240_000);
});

describe("symlinks and modes", () => {
  const conf = (extra: Record<string, unknown> = {}) => flannelConf(node, extra);
  const call = (verb: string, id: string, pod: string, config: unknown = conf()) =>
    invoke(node, { type: "flannel", verb, containerId: id, netns: `/run/netns/${pod}`, config });
  const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8);

  it("creates files with the reference's modes: flannel dir 0700 and files 0600, host-local dir 0755, address files 0644, lock 0750", () => {
    const pod = node.addPod();
    const o = call("ADD", "modes", pod);
    expect(o.status, o.stdout).toBe(0);
    expect(mode(join(node.work, "flannel"))).toBe("700");
    expect(mode(join(node.work, "flannel", "modes"))).toBe("600");
    const store = join(node.work, "networks", "cbr0");
    expect(mode(store)).toBe("755");
    expect(mode(join(store, "lock"))).toBe("750");
    expect(mode(join(store, "10.244.1.2"))).toBe("644");
    expect(mode(join(store, "last_reserved_ip.0"))).toBe("644");
    expect(call("DEL", "modes", pod).status).toBe(0);
  });

  it("dataDir, ipam.dataDir and subnetFile that are symlinks are followed (operator's choice, as the reference does)", () => {
    const real = join(node.work, "elsewhere");
    mkdirSync(join(real, "flannel"), { recursive: true });
    mkdirSync(join(real, "networks"), { recursive: true });
    writeFileSync(join(real, "subnet.env"), SUBNET_ENV);
    symlinkSync(join(real, "flannel"), join(node.work, "flannel-link"));
    symlinkSync(join(real, "networks"), join(node.work, "networks-link"));
    symlinkSync(join(real, "subnet.env"), join(node.work, "subnet-link.env"));
    const linked = conf({
      dataDir: join(node.work, "flannel-link"),
      subnetFile: join(node.work, "subnet-link.env"),
      ipam: { dataDir: join(node.work, "networks-link") },
    });
    const pod = node.addPod();
    expect(call("ADD", "linked", pod, linked).status).toBe(0);
    expect(readdirSync(join(real, "flannel"))).toEqual(["linked"]);
    expect(readdirSync(join(real, "networks", "cbr0"))).toContain("10.244.1.2");
    expect(lstatSync(join(node.work, "flannel-link")).isSymbolicLink()).toBe(true);
    expect(call("DEL", "linked", pod, linked).status).toBe(0);
    expect(readdirSync(join(real, "flannel"))).toEqual([]);
  });

  it("a dangling dataDir symlink is a clear error and creates nothing", () => {
    symlinkSync(join(node.work, "nowhere"), join(node.work, "dangling"));
    const pod = node.addPod();
    const o = call("ADD", "dangling", pod, conf({ dataDir: join(node.work, "dangling") }));
    expect(o.status).toBe(1);
    expect(o.json.msg).toContain(join(node.work, "dangling"));
    expect(existsSync(join(node.work, "nowhere"))).toBe(false);
    expect(kernelLeftovers(node)).toEqual([]);
  });

  it("symlinks planted inside the stores are never followed: not the lock, a reservation, a cursor or a saved config", () => {
    const victim = join(node.work, "victim");
    writeFileSync(victim, "precious\n");
    const store = join(node.work, "networks", "cbr0");
    const pod = node.addPod();
    // A saved config that is a symlink: DEL treats it as corrupt, rebuilds, and removes the link only.
    expect(call("ADD", "planted", pod).status).toBe(0);
    execFileSync("ln", ["-sf", victim, join(node.work, "flannel", "planted")]);
    expect(call("DEL", "planted", pod).status).toBe(0);
    expect(existsSync(join(node.work, "flannel", "planted"))).toBe(false);
    // A cursor and a reservation that are symlinks are read as absent / not a reservation.
    execFileSync("ln", ["-sf", victim, join(store, "last_reserved_ip.0")]);
    symlinkSync(victim, join(store, "10.244.1.2"));
    const o = call("ADD", "planted2", pod);
    expect(o.status, o.stdout).toBe(0);
    expect(JSON.stringify(o.json)).not.toContain("10.244.1.2/24");
    expect(call("DEL", "planted2", pod).status).toBe(0);
    // A lock that is a symlink: refused (code 5 naming it), its target neither created nor locked.
    execFileSync("rm", ["-f", join(store, "lock")]);
    symlinkSync(join(node.work, "lock-target"), join(store, "lock"));
    const locked = call("ADD", "planted3", pod);
    expect(locked.status).toBe(1);
    expect(locked.json.msg).toContain("lock");
    expect(existsSync(join(node.work, "lock-target"))).toBe(false);
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(kernelLeftovers(node)).toEqual([]);
    execFileSync("rm", ["-f", join(store, "lock"), join(store, "10.244.1.2"), join(store, "last_reserved_ip.0")]);
  });
});
