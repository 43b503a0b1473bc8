import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { STANDALONE_RUNTIME } from "../helpers/executables.js";
import { AGENTS, buildStandalone, ROOT, tempDir, TYPES, version } from "./distribution-helpers.js";

// The standalone executable: the multi-call dispatch by name, and a pod that gets its network from
// it through libcni (the conformance driver) in a mount namespace where no node binary exists.
const tmp = tempDir("weft-standalone-");
const SA = join(tmp.dir, "standalone");
const PFX = `wd${process.pid % 10000}-`;
const NODE_NS = `${PFX}node`;
const POD_NS = `${PFX}pod`;

beforeAll(async () => {
  await buildStandalone(SA);
}, 120_000);
afterAll(() => {
  for (const ns of [NODE_NS, POD_NS]) spawnSync("ip", ["netns", "del", ns], { stdio: "ignore" });
  tmp.remove();
});

const CACHE = { WEFT_CACHE_DIR: join(tmp.dir, "cache") };

function bare(path: string, argv0?: string) {
  return spawnSync(path, [], { env: { PATH: "/usr/bin:/bin", ...CACHE }, encoding: "utf8", argv0, input: "" });
}

describe("the standalone multi-call executable", () => {
  it("is one file under weft and every program's name: the CNI plugins and the node agent", () => {
    expect(AGENTS).toEqual(["flanneld"]);
    const inodes = new Set(["weft", ...TYPES, ...AGENTS].map((n) => statSync(join(SA, n)).ino));
    expect(inodes.size).toBe(1);
    expect(readFileSync(join(SA, "weft")).subarray(0, 4)).toEqual(Buffer.from("\x7fELF", "latin1"));
  });

  it.each(TYPES)("runs %s, and only it, when invoked by that name", async (type) => {
    const answer = await version(join(SA, type), CACHE);
    expect(answer.ok).toBe(true);
    // Each plugin's main module runs its plugin when evaluated: a second one would answer twice.
    expect(answer.out.trim().split("\n")).toHaveLength(1);
    expect(bare(join(SA, type)).stderr).toContain(`weft CNI plugin ${type}\n`);
  });

  it(`carries the runtime the build ran on: ${STANDALONE_RUNTIME === "bun" ? "the Bun scripts/project-bun pins, and no Node.js" : "under make check, the project's pinned Node.js LTS"}`, () => {
    const bytes = readFileSync(join(SA, "weft")).toString("latin1");
    const nodeVersion = /node\.js\/v(\d+\.\d+\.\d+)/.exec(bytes)?.[1];
    if (STANDALONE_RUNTIME === "bun") {
      const pinned = /^BUN_VERSION=(\S+)/m.exec(readFileSync(join(ROOT, "scripts/project-bun"), "utf8"))?.[1];
      expect(/Bun v(\d+\.\d+\.\d+) \(Linux x64/.exec(bytes)?.[1]).toBe(pinned);
      expect(nodeVersion).toBeUndefined();
      return;
    }
    expect(nodeVersion).toBe(process.versions.node);
    if (process.env.WEFT_REQUIRE_PREREQUISITES === "1") {
      const pinned = /^NODE_VERSION=(\S+)/m.exec(readFileSync(join(ROOT, "scripts/project-node"), "utf8"))?.[1];
      expect(nodeVersion).toBe(pinned);
    }
  });

  it("takes the name from argv[0] too (a symlink's name), and refuses a name that is no program of weft's", () => {
    expect(bare(join(SA, "weft"), "/opt/cni/bin/portmap").stderr).toContain("weft CNI plugin portmap\n");
    const refused = bare(join(SA, "weft"));
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`install this executable under one of the names of weft's programs (${[...TYPES, ...AGENTS].join(", ")})`);
  });

  describe("the node agent, its sixth program", () => {
    const agent = (path: string, args: string[], argv0?: string) =>
      spawnSync(path, args, { env: { PATH: "/usr/bin:/bin", ...CACHE }, encoding: "utf8", argv0, input: "", timeout: 20_000 });
    const usage = () => agent(join(SA, "flanneld"), ["--help"]);

    it("runs flanneld when invoked by that name, a hard link's or a symlink's, and not as a CNI plugin", () => {
      expect(usage()).toMatchObject({ status: 0, stdout: expect.stringContaining("Usage: flanneld") });
      expect(agent(join(SA, "weft"), ["--help"], "/usr/local/bin/flanneld").stdout).toBe(usage().stdout);
      // The CNI names stay CNI plugins with the same arguments.
      expect(agent(join(SA, "bridge"), ["--help"]).stdout).not.toContain("Usage: flanneld");
    });

    it("takes its flags after `weft flanneld` as after `flanneld`, the program's name not among them", () => {
      expect(agent(join(SA, "weft"), ["flanneld", "--help"]).stdout).toBe(usage().stdout);
      const version = agent(join(SA, "weft"), ["flanneld", "--version"]);
      expect(version).toMatchObject({ status: 0, stdout: agent(join(SA, "flanneld"), ["--version"]).stdout });
      // The build id names the form: sea for the Node.js single executable, bun for Bun's.
      expect(version.stdout).toMatch(new RegExp(`^\\d+\\.\\d+\\.\\d+\\+${STANDALONE_RUNTIME === "bun" ? "bun" : "sea"}\\.[0-9a-f]{12}\\n$`));
      for (const path of [join(SA, "flanneld"), join(SA, "weft")]) {
        const bad = agent(path, [...(path.endsWith("weft") ? ["flanneld"] : []), "--ip-masq", "--no-such-flag"]);
        expect(bad.status).toBe(2);
        expect(bad.stderr).toBe("flanneld: --no-such-flag: unknown flag (see --help for flanneld's flags)\n");
      }
    });
  });
});

describe("the standalone executable's code cache", () => {
  const cache = join(tmp.dir, "codecache");
  const run = (name: string, env: Record<string, string>, input: string) =>
    spawnSync(join(SA, name), [], { env: { PATH: "/usr/bin:/bin", WEFT_CACHE_DIR: cache, ...env }, encoding: "utf8", input });
  const files = () =>
    (existsSync(cache) ? readdirSync(cache).flatMap((d) => readdirSync(join(cache, d))) : []).filter((f) => !/\.node(\.verified)?$/.test(f)).sort();

  if (STANDALONE_RUNTIME === "node") {
    it("keeps one per name and verb, written only by a run that succeeded, beside the unpacked bundle", () => {
      const failed = run(
        "portmap",
        { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c", CNI_NETNS: "/proc/self/ns/net", CNI_IFNAME: "eth0", CNI_PATH: SA },
        "not json",
      );
      expect(failed.status).toBe(1);
      expect(files().filter((f) => f.endsWith(".jscache"))).toEqual([]);
      expect(run("portmap", { CNI_COMMAND: "VERSION" }, "{}").status).toBe(0);
      expect(run("loopback", { CNI_COMMAND: "VERSION" }, "{}").status).toBe(0);
      expect(files()).toEqual(["bundle.js", "bundle.js.verified", "loopback.VERSION.jscache", "portmap.VERSION.jscache"]);
    });
  } else {
    const needs = rootUser();
    it.skipIf(needs.skip)(needs.title("has none under Bun, whose bytecode is compiled in: the cache holds the native addon alone"), () => {
      expect(run("portmap", { CNI_COMMAND: "VERSION" }, "{}").status).toBe(0);
      // An ADD loads the native addon: in a namespace of the test's own.
      const ns = `${PFX}cc`;
      execFileSync("ip", ["netns", "add", ns]);
      try {
        const netns = { CNI_CONTAINERID: "c", CNI_NETNS: `/var/run/netns/${ns}`, CNI_IFNAME: "lo", CNI_PATH: SA };
        const added = run("loopback", { CNI_COMMAND: "ADD", ...netns }, '{"cniVersion":"1.0.0","name":"n","type":"loopback"}');
        expect(added.status, added.stdout + added.stderr).toBe(0);
      } finally {
        spawnSync("ip", ["netns", "del", ns]);
      }
      expect(files()).toEqual([]);
      expect(readdirSync(cache).flatMap((d) => readdirSync(join(cache, d)))).toEqual(["weft.node", "weft.node.verified"]);
    });
  }
});

describe("one process per pod in the standalone form", () => {
  const needs = all(rootUser(), command("strace"));
  it.skipIf(needs.skip)(
    needs.title("flannel runs bridge and host-local, hard links of itself, in its own process; a copy is executed"),
    () => {
      const t = join(tmp.dir, "one-process");
      const copy = join(t, "copy");
      mkdirSync(copy, { recursive: true });
      writeFileSync(join(t, "subnet.env"), "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
      // Not the same file: a byte-identical copy under the delegates' names must be executed.
      for (const type of ["bridge", "host-local"]) execFileSync("cp", [join(SA, "weft"), join(copy, type)]);
      const node = `${PFX}op-node`;
      const pod = `${PFX}op-pod`;
      for (const ns of [node, pod]) execFileSync("ip", ["netns", "add", ns]);
      try {
        const execs = (cniPath: string, id: string) => {
          const conf = {
            cniVersion: "1.0.0",
            name: "cbr0",
            type: "flannel",
            subnetFile: join(t, "subnet.env"),
            dataDir: join(t, "flannel"),
            ipam: { dataDir: join(t, "ipam") },
          };
          const trace = join(t, `trace-${id}`);
          const env = [
            "PATH=/usr/bin:/bin",
            `CNI_CONTAINERID=${id}`,
            `CNI_NETNS=/run/netns/${pod}`,
            "CNI_IFNAME=eth0",
            `CNI_PATH=${cniPath}`,
            `WEFT_CACHE_DIR=${CACHE.WEFT_CACHE_DIR}`,
          ];
          const run = (verb: string, traced: boolean) =>
            spawnSync(
              "ip",
              [
                "netns",
                "exec",
                node,
                "env",
                "-i",
                ...env,
                `CNI_COMMAND=${verb}`,
                ...(traced ? ["strace", "-f", "-qq", "-e", "trace=execve", "-o", trace] : []),
                join(SA, "flannel"),
              ],
              {
                input: JSON.stringify(conf),
                encoding: "utf8",
              },
            );
          const add = run("ADD", true);
          expect(add.status, add.stdout + add.stderr).toBe(0);
          expect(run("DEL", false).status).toBe(0);
          return readFileSync(trace, "utf8")
            .split("\n")
            .filter((l) => l.includes("execve(") && !l.includes("ENOENT")).length;
        };
        expect(execs(SA, "same")).toBe(1);
        expect(execs(`${copy}:${SA}`, "copied")).toBe(3);
      } finally {
        for (const ns of [node, pod]) spawnSync("ip", ["netns", "del", ns]);
      }
    },
    60_000,
  );
});

/** Why the end-to-end test cannot run here, or undefined when it can. */
/** What the end-to-end test needs beside the kernel: namespaces, ping, and go for the libcni driver. */
const endToEnd = all(
  rootUser(),
  command("unshare", "util-linux"),
  command("ip", "iproute2"),
  command("ping", "iputils-ping"),
  command("go", "golang-go"),
);

/** The libcni driver: the conformance suite's build when it is current, else built here. */
function driver(): string {
  const built = join(ROOT, "conformance/.work/driver");
  const source = join(ROOT, "conformance/driver/main.go");
  if (existsSync(built) && statSync(built).mtimeMs >= statSync(source).mtimeMs) return built;
  const out = join(tmp.dir, "driver");
  const build = spawnSync("go", ["build", "-o", out, "./conformance/driver"], {
    cwd: ROOT,
    env: { ...process.env, GO111MODULE: "off", GOPATH: "/usr/share/gocode", GOFLAGS: "", GOCACHE: join(tmp.dir, "gocache") },
    encoding: "utf8",
    timeout: 240_000,
  });
  if (build.status !== 0) throw new Error(`the libcni driver does not build: ${build.stderr.slice(0, 300)}`);
  return out;
}

/** Runs in `unshare -m`: hides every node binary, installs, then ADD/CHECK/DEL through libcni. */
const SCENARIO = String.raw`
set -euo pipefail
: >"$T/empty"
hidden=()
for dir in ${"$"}{PATH//:/ } /usr/local/bin /usr/bin /bin; do
  for name in node nodejs; do
    [ -e "$dir/$name" ] || continue
    real=$(realpath "$dir/$name")
    [[ " ${"$"}{hidden[*]-} " == *" $real "* ]] && continue
    mount --bind "$T/empty" "$real"
    hidden+=("$real")
  done
done
echo "${"$"}{hidden[*]-}" >"$OUT/hidden"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
if node -e 0 2>/dev/null || /usr/bin/node -e 0 2>/dev/null; then echo "node still runs" >&2; exit 1; fi

"$ROOT/scripts/install" --from "$SA" --bin-dir "$T/bin" --conf-dir "$T/net.d" --conflist "$T/conflist" >"$OUT/install" 2>&1

drv() { ip netns exec "$NODE_NS" env NETCONFPATH="$T/net.d" CNI_PATH="$T/bin" CNI_CACHE_DIR="$T/cache" WEFT_CACHE_DIR="$T/weft-cache" "$DRIVER" "$@"; }
drv add cbr0 c1 "/run/netns/$POD_NS" eth0 >"$OUT/add.json"
ip -n "$POD_NS" -j addr show dev eth0 >"$OUT/addr.json"
ip netns exec "$POD_NS" ping -c 1 -W 2 10.244.1.1 >"$OUT/ping" 2>&1
drv check cbr0 c1 "/run/netns/$POD_NS" eth0 >"$OUT/check"
drv del cbr0 c1 "/run/netns/$POD_NS" eth0 >"$OUT/del"
if ip -n "$POD_NS" link show dev eth0 >/dev/null 2>&1; then echo "eth0 still in the pod after DEL" >&2; exit 1; fi
echo done >"$OUT/done"
`;

describe("a pod's network from the standalone executables, with no node binary reachable", () => {
  it.skipIf(endToEnd.skip)(
    endToEnd.title("ADD, CHECK and DEL through libcni"),
    async () => {
      const drv = driver();
      const t = join(tmp.dir, "e2e");
      const out = join(t, "out");
      mkdirSync(out, { recursive: true });
      writeFileSync(join(t, "subnet.env"), "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
      const shipped = JSON.parse(readFileSync(join(ROOT, "conf/10-flannel.conflist"), "utf8")) as { plugins: { type: string }[] };
      expect(shipped.plugins.map((p) => p.type)).toEqual(["flannel", "portmap"]);
      const plugins = shipped.plugins.map((p) =>
        p.type === "flannel" ? { ...p, subnetFile: join(t, "subnet.env"), dataDir: join(t, "flannel"), ipam: { dataDir: join(t, "ipam") } } : p,
      );
      writeFileSync(join(t, "conflist"), JSON.stringify({ ...shipped, plugins }));
      for (const ns of [NODE_NS, POD_NS]) execFileSync("ip", ["netns", "add", ns]);
      execFileSync("ip", ["-n", NODE_NS, "link", "set", "lo", "up"]);

      const result = spawnSync("unshare", ["-m", "--propagation", "private", "bash", "--norc", "--noprofile", "-c", SCENARIO], {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          WEFT_CACHE_DIR: join(t, "weft-cache"),
          T: t,
          OUT: out,
          SA,
          ROOT,
          DRIVER: drv,
          NODE_NS,
          POD_NS,
        },
        encoding: "utf8",
        timeout: 60_000,
      });
      const read = (name: string) => (existsSync(join(out, name)) ? readFileSync(join(out, name), "utf8") : "");
      expect(result.stderr + read("install") + read("add.json")).not.toContain("still");
      expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
      expect(read("hidden")).toContain("/usr/bin/node");
      expect(read("install")).toContain("standalone form");

      const added = JSON.parse(read("add.json"));
      expect(added.ips[0]).toMatchObject({ address: "10.244.1.2/24", gateway: "10.244.1.1" });
      const addr = JSON.parse(read("addr.json"));
      expect(addr[0].addr_info).toContainEqual(expect.objectContaining({ local: "10.244.1.2", prefixlen: 24 }));
      expect(addr[0].mtu).toBe(1450);
      expect(read("ping")).toContain("1 received");
      expect(read("done")).toBe("done\n");
      // The native addon came out of the executable's SEA assets into the private cache.
      const cache = join(t, "weft-cache");
      expect(statSync(cache).mode & 0o777).toBe(0o700);
      expect(execFileSync("find", [cache, "-name", "*.node"], { encoding: "utf8" })).toMatch(/[0-9a-f]{64}\/weft\.node/);
    },
    300_000,
  );
});
