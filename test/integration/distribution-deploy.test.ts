import { spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { parseFlags, type AgentFlags } from "../../agent/flags.js";
import { flannelConfigSchema } from "../../plugins/flannel/schema.js";
import { createNetns, removeNetns, type TestNetns } from "../helpers/netns.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";
import { AGENTS, buildStandalone, ROOT, run, tempDir, TYPES, version } from "./distribution-helpers.js";

// The Kubernetes manifests and the Containerfile, checked statically (no Kubernetes and no container
// engine here), then the image's two programs run on the file layout the Containerfile describes
// with the manifest's own arguments and environment: the installer, and the node agent.
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
const IMAGE = `ghcr.io/weft-cni/weft:v${VERSION}`;
/** weft and kube-flannel: the agent and the plugins. */
const FULL = "deploy/weft.yaml";
/** The plugins alone, beside kube-flannel's own flanneld. */
const PLUGINS_ONLY = "deploy/weft-plugins.yaml";

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
}
interface Probe {
  httpGet?: { host?: string; path: string; port: number | string };
  periodSeconds?: number;
  failureThreshold?: number;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { privileged?: boolean; capabilities?: { add?: string[] } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  secret?: { secretName: string; defaultMode?: number; items?: { key: string; path: string }[] };
}
interface PodSpec {
  hostNetwork?: boolean;
  priorityClassName?: string;
  tolerations?: { operator?: string; effect?: string }[];
  affinity?: unknown;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  initContainers: Container[];
  containers: Container[];
  volumes: Volume[];
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: {
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}

/** The manifest's objects, read as kubectl reads YAML (1.1: `0400` is octal). */
function objects(file: string): Manifest[] {
  const docs = parseAllDocuments(readFileSync(join(ROOT, file), "utf8"), { version: "1.1" });
  for (const doc of docs) expect(doc.errors).toEqual([]);
  return docs.map((d) => d.toJS() as Manifest).filter(Boolean);
}

function daemonSet(file: string): Manifest {
  const sets = objects(file).filter((d) => d.kind === "DaemonSet");
  expect(sets).toHaveLength(1);
  return sets[0]!;
}

/** Where `container` sees the node's `hostPath`. */
function mountOf(pod: PodSpec, container: Container, hostPath: string): string | undefined {
  const volume = pod.volumes.find((v) => v.hostPath?.path === hostPath);
  return container.volumeMounts?.find((m) => m.name === volume?.name)?.mountPath;
}

/** The mount a container path lies on (the longest mount path that is it or a directory above it), and its volume. */
function mountFor(pod: PodSpec, container: Container, path: string) {
  const mounts = (container.volumeMounts ?? []).filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`));
  const mount = mounts.sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  return mount && { mount, volume: pod.volumes.find((v) => v.name === mount.name)! };
}

const envOf = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.value;

/**
 * The container's environment as the kubelet would give it, with `secret` standing in for the
 * Secret's values (a key it lacks is left unset when optional, as the kubelet does).
 */
function environment(c: Container, secret: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (e.value !== undefined) env[e.name] = e.value;
    else if (ref && ref.key in secret) env[e.name] = secret[ref.key]!;
    else if (!ref?.optional) throw new Error(`${c.name}: ${e.name} has no value and no Secret key it may lack`);
  }
  return env;
}

/** The keys the kubectl command in the manifest's header puts into the Secret `name`. */
function secretKeysDocumented(file: string, name: string): { keys: string[]; optional: string[] } {
  const comments = readFileSync(join(ROOT, file), "utf8")
    .split("\n")
    .filter((l) => l.startsWith("#"))
    .map((l) => l.replace(/^#\s?/, ""))
    .join("\n")
    .replace(/\\\n/g, " ");
  const create = comments.split("\n").find((l) => l.includes(`create secret generic ${name} `));
  expect(create, `${file} says how to create the Secret ${name}`).toBeDefined();
  const keysOf = (text: string) => [...text.matchAll(/--from-(?:literal|file)=([^=\s]+)=/g)].map((m) => m[1]!);
  const optionalLine = comments.split("\n").find((l) => l.startsWith("(add --from-literal"));
  return { keys: keysOf(create!), optional: optionalLine ? keysOf(optionalLine) : [] };
}

/** Status of GET `url` (curl, in `ns`), and the body; undefined when nothing answers. */
function httpGet(ns: TestNetns, url: string): { status: number; body: string } | undefined {
  const out = spawnSync("ip", ["netns", "exec", ns.name, "curl", "-s", "--max-time", "2", "-w", "\n%{http_code}", url], { encoding: "utf8" });
  const status = Number(out.stdout.slice(out.stdout.lastIndexOf("\n") + 1));
  return out.status === 0 && status > 0 ? { status, body: out.stdout.slice(0, out.stdout.lastIndexOf("\n")) } : undefined;
}

/** A Kubernetes memory quantity (128Mi, 1Gi, 500M) in bytes. */
function bytesOf(quantity: string): number {
  const [, amount, unit] = /^(\d+)(Ki|Mi|Gi|k|M|G)?$/.exec(quantity) ?? [];
  if (amount === undefined) throw new Error(`cannot read the quantity ${quantity}`);
  const units: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, k: 1e3, M: 1e6, G: 1e9 };
  return Number(amount) * (unit ? units[unit]! : 1);
}

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Containerfile instructions, continuation lines joined, comments dropped, numbered by stage. */
function containerfile(): Instruction[] {
  const text = readFileSync(join(ROOT, "Containerfile"), "utf8").replace(/\\\n/g, " ");
  let stage = -1;
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"))
    .map((line) => {
      const [, op, args] = /^(\S+)\s+(.*)$/.exec(line) ?? [];
      if (!op) throw new Error(`Containerfile: cannot read ${JSON.stringify(line)}`);
      if (op.toUpperCase() === "FROM") stage++;
      return { op: op.toUpperCase(), args: args!.trim(), stage };
    });
}

describe.each([FULL, PLUGINS_ONLY])("%s: the plugin installer", (file) => {
  const ds = daemonSet(file);
  const pod = ds.spec.template.spec;
  const init = pod.initContainers.find((c) => c.name === "install-weft")!;

  it("is a DaemonSet in kube-flannel's namespace, scheduled as kube-flannel's own is", () => {
    expect([ds.apiVersion, ds.metadata.namespace]).toEqual(["apps/v1", "kube-flannel"]);
    expect(ds.spec.template.metadata.labels).toMatchObject(ds.spec.selector.matchLabels);
    expect(pod.priorityClassName).toBe("system-node-critical");
    expect(pod.tolerations).toContainEqual({ operator: "Exists", effect: "NoSchedule" });
    expect(pod.hostNetwork).toBe(true);
    expect(JSON.stringify(pod.affinity)).toContain('"key":"kubernetes.io/os","operator":"In","values":["linux"]');
    expect(pod.containers.length).toBeGreaterThan(0);
  });

  it("runs weft's image of this version, whose entrypoint is the installer", () => {
    expect(init.image).toBe(IMAGE);
    expect(init.command).toBeUndefined();
    expect(readFileSync(join(ROOT, "Containerfile"), "utf8")).toContain(`-t ${IMAGE} `);
  });

  it("installs the CNI plugins onto the node's /opt/cni/bin and /etc/cni/net.d through hostPath mounts, and no agent there", () => {
    expect(mountOf(pod, init, "/opt/cni/bin")).toBeDefined();
    expect(mountOf(pod, init, "/etc/cni/net.d")).toBeDefined();
    expect(envOf(init, "WEFT_BIN_DIR")).toBe(mountOf(pod, init, "/opt/cni/bin"));
    expect(envOf(init, "WEFT_CONF_DIR")).toBe(mountOf(pod, init, "/etc/cni/net.d"));
    expect(envOf(init, "WEFT_AGENT_DIR")).toBeUndefined();
    for (const v of pod.volumes.filter((v) => v.hostPath)) {
      expect(v.hostPath!.type).toBe(v.hostPath!.path === "/run/xtables.lock" ? "FileOrCreate" : "DirectoryOrCreate");
    }
  });
});

describe(`${FULL}: the node agent`, () => {
  const docs = objects(FULL);
  const ds = daemonSet(FULL);
  const pod = ds.spec.template.spec;
  const agent = pod.containers.find((c) => c.name === "flanneld")!;
  const secretName = agent.env?.find((e) => e.name === "FLANNELD_ETCD_ENDPOINTS")?.valueFrom?.secretKeyRef?.name;
  const sample = { endpoints: "https://10.0.0.11:2379,https://10.0.0.12:2379", username: "weft", password: "secret" };
  const flags = (): AgentFlags => parseFlags(agent.args ?? [], environment(agent, sample));

  it("runs beside the installer, as kube-flannel's flanneld container beside its install-cni", () => {
    expect(pod.containers.map((c) => c.name)).toEqual(["flanneld"]);
    expect(pod.initContainers.map((c) => c.name)).toEqual(["install-weft"]);
    expect(agent.image).toBe(IMAGE);
  });

  it("creates its namespace at Pod Security's privileged level (hostNetwork, hostPath, NET_ADMIN)", () => {
    const ns = docs.find((d) => d.kind === "Namespace");
    expect(ns?.metadata).toMatchObject({ name: ds.metadata.namespace, labels: { "pod-security.kubernetes.io/enforce": "privileged" } });
  });

  it("runs the agent from the image by the name the standalone executable serves it under", () => {
    expect(agent.command).toHaveLength(1);
    expect(dirname(agent.command![0]!)).toBe("/weft");
    expect(AGENTS).toContain(basename(agent.command![0]!));
  });

  it("gives flags flanneld accepts, in etcd mode, with the endpoints and credentials from the Secret", () => {
    const parsed = flags();
    expect(parsed.etcdEndpoints).toEqual(sample.endpoints.split(","));
    expect([parsed.etcdUsername, parsed.etcdPassword]).toEqual([sample.username, sample.password]);
    expect(parsed.ipMasq).toBe(true);
    expect(parsed.etcdPrefix).toBe("/coreos.com/network");
    expect(parsed.ignored).toEqual([]);
    // Without the optional credentials too.
    expect(parseFlags(agent.args ?? [], environment(agent, { endpoints: sample.endpoints })).etcdUsername).toBe("");
    // The endpoints are the Secret's alone: not also on the command line, where they would win.
    expect((agent.args ?? []).some((a) => a.includes("etcd-endpoints"))).toBe(false);
    expect(agent.env?.find((e) => e.name === "FLANNELD_ETCD_ENDPOINTS")?.valueFrom?.secretKeyRef?.optional).toBeFalsy();
  });

  it("probes the health server the flags start: /healthz for liveness, /readyz for readiness", () => {
    const parsed = flags();
    expect(parsed.healthzPort).toBeGreaterThan(0);
    for (const [probe, path] of [
      [agent.livenessProbe, "/healthz"],
      [agent.readinessProbe, "/readyz"],
    ] as const) {
      const get = probe?.httpGet;
      expect(get?.path).toBe(path);
      const port = typeof get?.port === "number" ? get.port : agent.ports?.find((p) => p.name === get?.port)?.containerPort;
      expect(port).toBe(parsed.healthzPort);
      // The kubelet probes the pod's address (the node's, with hostNetwork) unless told another host.
      if (parsed.healthzIP !== "0.0.0.0") expect(get?.host).toBe(parsed.healthzIP);
    }
    expect(agent.ports).toContainEqual({ name: "healthz", containerPort: parsed.healthzPort, protocol: "TCP" });
  });

  it("finds every file its flags name on a mount: the TLS files are the Secret's keys, subnet.env is the node's /run/flannel", () => {
    const parsed = flags();
    const tls = [parsed.etcdCafile, parsed.etcdCertfile, parsed.etcdKeyfile];
    for (const file of tls) {
      const on = mountFor(pod, agent, file);
      expect(on?.volume.secret?.secretName, file).toBe(secretName);
      expect(on?.mount.readOnly).toBe(true);
      const inVolume = file.slice(on!.mount.mountPath.length + 1);
      expect(on?.volume.secret?.items?.map((i) => i.path)).toContain(inVolume);
    }
    expect(pod.volumes.find((v) => v.secret)?.secret?.defaultMode).toBe(0o400);
    const subnetEnv = mountFor(pod, agent, parsed.subnetFile);
    expect(subnetEnv?.volume.hostPath?.path).toBe(subnetEnv?.mount.mountPath);
    // Where weft's flannel plugin reads it unless a conflist says otherwise, and the shipped one does not.
    expect(parsed.subnetFile).toBe(flannelConfigSchema.properties.subnetFile.default);
    const conflist = JSON.parse(readFileSync(join(ROOT, "conf/10-flannel.conflist"), "utf8")) as { plugins: Record<string, unknown>[] };
    expect(conflist.plugins.find((p) => p.type === "flannel")).not.toHaveProperty("subnetFile");
  });

  it("reads from the Secret exactly the keys the header's kubectl command puts there", () => {
    const { keys, optional } = secretKeysDocumented(FULL, secretName!);
    const volumeKeys = pod.volumes.filter((v) => v.secret?.secretName === secretName).flatMap((v) => v.secret?.items?.map((i) => i.key) ?? []);
    const refs = (agent.env ?? []).map((e) => e.valueFrom?.secretKeyRef).filter((r) => r !== undefined);
    expect(refs.every((r) => r.name === secretName)).toBe(true);
    const required = [...volumeKeys, ...refs.filter((r) => !r.optional).map((r) => r.key)];
    expect([...required].sort()).toEqual([...keys].sort());
    expect(refs.filter((r) => r.optional).map((r) => r.key)).toEqual(optional);
    // The manifest does not carry the Secret: applying it again must never overwrite the real one.
    expect(docs.some((d) => d.kind === "Secret")).toBe(false);
  });

  it("holds the node's network as kube-flannel's flanneld does: hostNetwork, NET_ADMIN and NET_RAW, the xtables lock", () => {
    expect(pod.hostNetwork).toBe(true);
    expect(agent.securityContext?.privileged).toBe(false);
    expect([...(agent.securityContext?.capabilities?.add ?? [])].sort()).toEqual(["NET_ADMIN", "NET_RAW"]);
    const lock = mountFor(pod, agent, "/run/xtables.lock");
    expect(lock?.mount.mountPath).toBe("/run/xtables.lock");
    expect(lock?.volume.hostPath).toEqual({ path: "/run/xtables.lock", type: "FileOrCreate" });
    expect(agent.resources?.requests).toHaveProperty("cpu");
    expect(agent.resources?.requests).toHaveProperty("memory");
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(10);
  });
});

describe("Containerfile", () => {
  const lines = containerfile();
  const last = Math.max(...lines.map((l) => l.stage));
  const stages = lines.filter((l) => l.op === "FROM").map((l) => l.args.split(/\s+AS\s+/i));

  it("pins its base images and names the stages it copies from", () => {
    for (const [image] of stages) expect(image).toMatch(/^[a-z0-9./-]+\/[a-z0-9._/-]+:[A-Za-z0-9._-]+$/);
    for (const [image] of stages) expect(image).not.toMatch(/:latest$/);
    const names = stages.map((s) => s[1]).filter(Boolean);
    for (const copy of lines.filter((l) => l.op === "COPY" && l.args.startsWith("--from="))) {
      expect(names).toContain(/^--from=(\S+)/.exec(copy.args)![1]);
    }
    expect(lines.some((l) => l.op === "ADD")).toBe(false);
    for (const apt of lines.filter((l) => l.args.includes("apt-get install"))) {
      expect(apt.args).toContain("--no-install-recommends");
      expect(apt.args).toContain("rm -rf /var/lib/apt/lists/*");
    }
    expect(lines.find((l) => l.args.includes("npm "))?.args).toMatch(/npm ci\b/);
  });

  it("builds on the Node.js LTS scripts/project-node pins, so the image's executable is the one built elsewhere", () => {
    const pinned = /^NODE_VERSION=(\S+)/m.exec(readFileSync(join(ROOT, "scripts/project-node"), "utf8"))?.[1];
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    const build = stages.find((s) => s[1] === "build")?.[0];
    expect(build).toBe(`docker.io/library/node:${pinned}-bookworm-slim`);
  });

  it("ends in an exec-form entrypoint that is the installer, beside the executable, its name lists, the conflist and the agent's name", () => {
    const final = lines.filter((l) => l.stage === last);
    expect(final.filter((l) => l.op === "ENTRYPOINT").map((l) => JSON.parse(l.args))).toEqual([["/weft/install"]]);
    const copies = final.filter((l) => l.op === "COPY").map((l) => l.args.split(/\s+/).slice(1));
    expect(copies).toEqual([
      ["/src/dist/standalone/weft", "/weft/weft"],
      ["/src/dist/standalone/programs", "/weft/programs"],
      ["/src/dist/standalone/agents", "/weft/agents"],
      ["/src/scripts/install", "/weft/install"],
      ["/src/conf/10-flannel.conflist", "/weft/10-flannel.conflist"],
      ["/src/deploy/iptables-mode", "/weft/iptables-mode"],
    ]);
    // The agent's rules go in through iptables-restore, or nft with EnableNFTables.
    const installed = final.find((l) => l.op === "RUN" && l.args.includes("apt-get install"))?.args.split(/\s+/);
    expect(installed).toEqual(expect.arrayContaining(["iptables", "nftables"]));
  });

  it("keeps the build context to sources", () => {
    const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n");
    for (const dir of ["node_modules", "dist", "bin", "gen", "build"]) expect(ignored).toContain(dir);
    for (const needed of ["package.json", "scripts", "lib", "plugins", "ipam", "agent", "conf", "deploy"]) expect(ignored).not.toContain(needed);
  });

  describe("the image's programs, on the layout its COPY and link lines make", () => {
    // Made when a test of this block runs (not when a filter skips them all, which skips afterAll too).
    let tmp: { dir: string; remove: () => void };
    let image: string;
    beforeAll(async () => {
      tmp = tempDir("weft-image-");
      image = join(tmp.dir, "image");
      await buildStandalone(join(tmp.dir, "standalone"));
      // Build-stage paths (/src/...) are this checkout, the standalone build standing in for dist/.
      const sources: Record<string, string> = {
        "/src/dist/standalone/weft": join(tmp.dir, "standalone/weft"),
        "/src/dist/standalone/programs": join(tmp.dir, "standalone/programs"),
        "/src/dist/standalone/agents": join(tmp.dir, "standalone/agents"),
        "/src/scripts/install": join(ROOT, "scripts/install"),
        "/src/conf/10-flannel.conflist": join(ROOT, "conf/10-flannel.conflist"),
        "/src/deploy/iptables-mode": join(ROOT, "deploy/iptables-mode"),
      };
      for (const l of lines.filter((l) => l.stage === last)) {
        if (l.op === "COPY") {
          const [, from, to] = l.args.split(/\s+/);
          mkdirSync(dirname(join(image, to!)), { recursive: true });
          copyFileSync(sources[from!]!, join(image, to!));
        } else if (l.op === "RUN" && l.args.startsWith("ln ")) {
          for (const command of l.args.split("&&")) {
            const [ln, option, target, name] = command.trim().split(/\s+/);
            expect([ln, option]).toEqual(["ln", "-s"]);
            mkdirSync(dirname(join(image, name!)), { recursive: true });
            symlinkSync(target!.startsWith("/") ? join(image, target!) : target!, join(image, name!));
          }
        }
      }
      // COPY keeps the source's mode: the executable and the script are 0755 in the build stage.
      for (const path of ["weft/weft", "weft/install"]) chmodSync(join(image, path), 0o755);
      expect(statSync(join(image, "weft/iptables-mode")).mode & 0o111).toBe(0o111);
    }, 120_000);
    afterAll(() => tmp?.remove());

    it.each([FULL, PLUGINS_ONLY])("installs the CNI plugins onto %s's mounts with its environment alone", async (file) => {
      const host = join(tmp.dir, `host-${basename(file)}`);
      const init = daemonSet(file).spec.template.spec.initContainers[0]!;
      const env = Object.fromEntries((init.env ?? []).map((e) => [e.name, join(host, e.value!)]));
      const cache = { WEFT_CACHE_DIR: join(tmp.dir, "cache") };
      await run(join(image, "weft/install"), [], { env: { PATH: "/usr/bin:/bin", ...cache, ...env } });
      const bin = join(host, envOf(init, "WEFT_BIN_DIR")!);
      expect(readdirSync(bin).sort()).toEqual([...TYPES].sort());
      for (const t of TYPES) expect((await version(join(bin, t), cache)).ok).toBe(true);
      expect(readFileSync(join(host, envOf(init, "WEFT_CONF_DIR")!, "10-flannel.conflist"), "utf8")).toBe(
        readFileSync(join(ROOT, "conf/10-flannel.conflist"), "utf8"),
      );
    });

    it("installs the agent onto a node too when told where, from the image's agents list", async () => {
      const host = join(tmp.dir, "host-agent");
      const env = { WEFT_BIN_DIR: join(host, "opt/cni/bin"), WEFT_AGENT_DIR: join(host, "usr/local/bin"), WEFT_NO_CONF: "1" };
      const cache = { WEFT_CACHE_DIR: join(tmp.dir, "cache") };
      const { stdout } = await run(join(image, "weft/install"), [], { env: { PATH: "/usr/bin:/bin", ...cache, ...env } });
      expect(stdout).toContain(`installed the node agent flanneld into ${env.WEFT_AGENT_DIR}`);
      expect(readdirSync(env.WEFT_AGENT_DIR)).toEqual([...AGENTS]);
      expect(readdirSync(env.WEFT_BIN_DIR).sort()).toEqual([...TYPES].sort());
    });

    const iptablesModes = all(rootUser(), command("iptables-legacy", "iptables"), command("iptables-nft", "iptables"));
    it.skipIf(iptablesModes.skip)(
      iptablesModes.title(
        "gives the agent the node's iptables: the mode of the kubelet's hint chain, else the mode holding more rules, else nft; decided once",
      ),
      () => {
        // The image's PATH (Debian's) puts /usr/local/sbin first.
        const sbin = join(image, "usr/local/sbin");
        const names = ["iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"];
        expect(readdirSync(sbin).sort()).toEqual([...names].sort());
        const cases: { what: string; node: string[][]; mode: "legacy" | "nft" }[] = [
          { what: "nothing anywhere", node: [], mode: "nft" },
          { what: "the kubelet's hint in legacy", node: [["iptables-legacy", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"]], mode: "legacy" },
          {
            what: "the kubelet's canary in nft, more rules in legacy",
            node: [
              ["ip6tables-nft", "-t", "mangle", "-N", "KUBE-KUBELET-CANARY"],
              ["iptables-legacy", "-A", "INPUT", "-j", "ACCEPT"],
              ["iptables-legacy", "-A", "FORWARD", "-j", "ACCEPT"],
            ],
            mode: "nft",
          },
          { what: "no hint, more rules in legacy", node: [["iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-j", "RETURN"]], mode: "legacy" },
        ];
        for (const c of cases) {
          const ns = createNetns("weft-ipt-");
          try {
            for (const cmd of c.node) ns.exec(cmd[0]!, cmd.slice(1));
            const state = join(tmp.dir, `iptables-mode-${ns.name}`);
            const env = { PATH: `${sbin}:/usr/sbin:/usr/bin:/sbin:/bin`, WEFT_IPTABLES_MODE_FILE: state };
            const version = ns.exec("iptables", ["--version"], { env });
            expect(version, c.what).toContain(c.mode === "legacy" ? "(legacy)" : "(nf_tables)");
            expect(readFileSync(state, "utf8")).toBe(`${c.mode}\n`);
            // A rule through the wrapper's restore lands in the node's mode, and its save reads it back.
            ns.exec("ip6tables-restore", ["--noflush"], { env, input: "*nat\n:WEFT-TEST - [0:0]\nCOMMIT\n" });
            expect(ns.exec(`ip6tables-${c.mode}-save`, ["-t", "nat"]), c.what).toContain(":WEFT-TEST");
            expect(ns.exec("ip6tables-save", ["-t", "nat"], { env })).toContain(":WEFT-TEST");
            // Decided once: rules the other mode gains later do not move the agent.
            const other = c.mode === "legacy" ? "nft" : "legacy";
            ns.exec(`iptables-${other}`, ["-t", "mangle", "-N", "KUBE-IPTABLES-HINT"]);
            expect(ns.exec("iptables", ["--version"], { env })).toBe(version);
          } finally {
            removeNetns(ns);
          }
        }
      },
      60_000,
    );

    const needs = all(
      rootUser(),
      command("curl"),
      command("openssl"),
      command("iptables"),
      command("etcd", "etcd-server"),
      command("etcdctl", "etcd-client"),
    );
    it.skipIf(needs.skip)(
      needs.title(
        "runs the agent with the manifest's command, arguments and environment: live and not ready while etcd is unreachable, ready on the Secret's TLS once it answers, and SIGTERM ends it with 0, leaving the network",
      ),
      async () => {
        const pod = daemonSet(FULL).spec.template.spec;
        const agent = pod.containers.find((c) => c.name === "flanneld")!;
        // Each mount as the kubelet makes it: a directory (or file) of the test's own, the Secret's items written into its one.
        const mounts = new Map<string, string>();
        for (const m of agent.volumeMounts ?? []) {
          const volume = pod.volumes.find((v) => v.name === m.name)!;
          const dir = join(tmp.dir, "mounts", m.name);
          if (volume.hostPath?.type === "FileOrCreate") {
            mkdirSync(dirname(dir), { recursive: true });
            writeFileSync(dir, "");
          } else mkdirSync(dir, { recursive: true });
          mounts.set(m.mountPath, dir);
        }
        const secretVolume = pod.volumes.find((v) => v.secret)!;
        const secretDir = mounts.get(agent.volumeMounts!.find((m) => m.name === secretVolume.name)!.mountPath)!;
        const items = Object.fromEntries(secretVolume.secret!.items!.map((i) => [i.key, join(secretDir, i.path)]));
        // The cluster's etcd CA, a server certificate for etcd and the client certificate the Secret holds.
        const pki = join(tmp.dir, "pki");
        mkdirSync(pki, { recursive: true });
        const openssl = (...args: string[]) => run("openssl", args, { cwd: pki });
        const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        await openssl("req", "-x509", ...newKey, "-subj", "/CN=etcd-ca", "-days", "1", "-keyout", "ca.key", "-out", items["ca.crt"]!);
        const sign = async (name: string, key: string, cert: string, extension: string) => {
          await openssl("req", ...newKey, "-subj", `/CN=${name}`, "-keyout", key, "-out", `${name}.csr`);
          writeFileSync(join(pki, `${name}.ext`), `${extension}\n`);
          await openssl(
            "x509",
            "-req",
            "-in",
            `${name}.csr`,
            "-CA",
            items["ca.crt"]!,
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            cert,
            "-extfile",
            `${name}.ext`,
          );
        };
        await sign("etcd", join(pki, "server.key"), join(pki, "server.crt"), "subjectAltName=IP:127.0.0.1");
        await sign("weft", items["tls.key"]!, items["tls.crt"]!, "extendedKeyUsage=clientAuth");
        // Container paths to the test's: a path on a mount is the same path under the mount's directory.
        const onHost = (value: string) => {
          for (const [mountPath, dir] of mounts) {
            if (value.includes(mountPath)) return value.replace(mountPath, dir);
          }
          return value;
        };
        const endpoint = "https://127.0.0.1:2379";
        // The image's PATH (Debian's: /usr/local/sbin first, where its iptables in the node's mode is).
        const imagePath = `${join(image, "usr/local/sbin")}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
        const iptablesMode = join(tmp.dir, "agent-iptables-mode");
        const env = {
          ...environment(agent, { endpoints: endpoint }),
          PATH: imagePath,
          WEFT_CACHE_DIR: join(tmp.dir, "cache"),
          WEFT_IPTABLES_MODE_FILE: iptablesMode,
        };
        const args = (agent.args ?? []).map(onHost);
        const envOnHost = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, onHost(v)]));
        const executable = join(image, agent.command![0]!);
        const parsed = parseFlags(agent.args ?? [], env);
        const subnetEnv = onHost(parsed.subnetFile);

        // A node: an interface with the default route, from which the agent takes its public address.
        const ns = createNetns("weft-deploy-");
        let child: ReturnType<typeof spawn> | undefined;
        let etcd: ReturnType<typeof spawn> | undefined;
        let stderr = "";
        const etcdctl = (...a: string[]) =>
          ns.exec("etcdctl", ["--endpoints", endpoint, "--cacert", items["ca.crt"]!, "--cert", items["tls.crt"]!, "--key", items["tls.key"]!, ...a], {
            env: { PATH: "/usr/bin:/bin", ETCDCTL_API: "3" },
            timeout: 10_000,
          });
        try {
          ns.exec("ip", ["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"]);
          ns.exec("ip", ["addr", "add", "192.0.2.10/24", "dev", "eth0"]);
          for (const link of ["eth0", "eth1"]) ns.exec("ip", ["link", "set", link, "up"]);
          ns.exec("ip", ["route", "add", "default", "via", "192.0.2.1"]);
          child = spawn(
            "ip",
            ["netns", "exec", ns.name, "env", "-i", ...Object.entries(envOnHost).map(([k, v]) => `${k}=${v}`), executable, ...args],
            {
              stdio: ["ignore", "ignore", "pipe"],
            },
          );
          child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
          const exited = new Promise<number | null>((resolve) => child!.on("exit", (code) => resolve(code)));
          const failed = exited.then((code) => Promise.reject(new Error(`the agent exited with ${code}: ${stderr}`)));
          const kubelet = (p: Probe) => httpGet(ns, `http://${p.httpGet!.host ?? "192.0.2.10"}:${parsed.healthzPort}${p.httpGet!.path}`);
          const live = await Promise.race([
            waitUntil(`the agent's ${agent.livenessProbe!.httpGet!.path}`, 30_000, () => kubelet(agent.livenessProbe!)),
            failed,
          ]);
          expect(live.status).toBe(200);
          // Readiness waits on etcd, and says so; the kubelet keeps the pod unready instead of restarting it.
          await waitUntil("the agent to try etcd", 10_000, () => (stderr.includes("etcd is unreachable") ? true : undefined));
          const waiting = kubelet(agent.readinessProbe!);
          expect(waiting?.status).toBe(503);
          expect(waiting?.body).toMatch(/etcd is unreachable/);
          expect(stderr).not.toMatch(/unknown flag|expected |needs a value|takes no arguments/);
          expect(existsSync(subnetEnv)).toBe(false);

          // etcd answers, on TLS with client certificates only, and holds the network config.
          etcd = spawn(
            "ip",
            [
              ...["netns", "exec", ns.name, "etcd", "--name", "m1", "--data-dir", join(tmp.dir, "etcd")],
              ...["--listen-client-urls", endpoint, "--advertise-client-urls", endpoint],
              ...["--cert-file", join(pki, "server.crt"), "--key-file", join(pki, "server.key")],
              ...["--client-cert-auth", "--trusted-ca-file", items["ca.crt"]!],
              ...["--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380"],
              ...["--initial-cluster", "m1=http://127.0.0.1:2380"],
            ],
            { stdio: "ignore" },
          );
          // endpoint health reports on stderr; a failure throws.
          await waitUntil("etcd to answer", 20_000, () => {
            etcdctl("endpoint", "health");
            return true;
          });
          etcdctl("put", `${parsed.etcdPrefix}/config`, '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
          const ready = await Promise.race([
            waitUntil(`the agent's ${agent.readinessProbe!.httpGet!.path}`, 60_000, () =>
              kubelet(agent.readinessProbe!)?.status === 200 ? true : undefined,
            ),
            failed,
          ]);
          expect(ready).toBe(true);
          // The memory the manifest requests covers what the agent holds once ready.
          const metrics = httpGet(ns, `http://127.0.0.1:${parsed.healthzPort}/metrics`)?.body ?? "";
          const resident = Number(/^process_resident_memory_bytes (\d+)$/m.exec(metrics)?.[1]);
          expect(resident).toBeGreaterThan(0);
          expect(resident).toBeLessThan(bytesOf(agent.resources!.requests!.memory!));
          const written = readFileSync(subnetEnv, "utf8");
          expect(written).toMatch(/^FLANNEL_NETWORK=10\.244\.0\.0\/16\nFLANNEL_SUBNET=10\.244\.\d+\.1\/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n$/);
          const lease = etcdctl("get", "--prefix", `${parsed.etcdPrefix}/subnets/`);
          expect(lease).toContain('"PublicIP":"192.0.2.10"');
          expect(ns.ipJson<{ ifname: string }[]>("link", "show", "flannel.1").map((l) => l.ifname)).toEqual(["flannel.1"]);
          // --ip-masq's rules went in through the image's iptables, in the mode it chose for this node.
          const mode = readFileSync(iptablesMode, "utf8").trim();
          expect(ns.exec(`iptables-${mode}-save`, ["-t", "nat"])).toContain("FLANNEL-POSTRTG");

          child.kill("SIGTERM");
          const code = await Promise.race([
            exited,
            new Promise((resolve) => setTimeout(() => resolve("still running"), pod.terminationGracePeriodSeconds! * 1000)),
          ]);
          expect(code, stderr).toBe(0);
          // The data path stays for the pods while the agent is away.
          expect(readFileSync(subnetEnv, "utf8")).toBe(written);
          expect(ns.ipJson<{ ifname: string }[]>("link", "show", "flannel.1")).toHaveLength(1);
        } finally {
          for (const proc of [child, etcd]) if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
          removeNetns(ns);
        }
        expect(existsSync(`/run/netns/${ns.name}`)).toBe(false);
      },
      120_000,
    );
  });
});
