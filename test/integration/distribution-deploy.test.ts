import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { buildStandalone, ROOT, run, tempDir, TYPES, version } from "./distribution-helpers.js";

// The Kubernetes manifest and the Containerfile, checked statically (no container engine here),
// and the image's entrypoint run on the file layout the Containerfile's COPY lines describe.
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
const IMAGE = `ghcr.io/weft-cni/weft:v${VERSION}`;

interface Container {
  name: string;
  image: string;
  command?: string[];
  env?: { name: string; value: string }[];
  volumeMounts?: { name: string; mountPath: string }[];
}
interface DaemonSet {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string };
  spec: {
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        hostNetwork?: boolean;
        priorityClassName?: string;
        tolerations?: { operator?: string; effect?: string }[];
        affinity?: unknown;
        initContainers: Container[];
        containers: Container[];
        volumes: { name: string; hostPath?: { path: string; type?: string } }[];
      };
    };
  };
}

function daemonSet(): DaemonSet {
  const docs = parseAllDocuments(readFileSync(join(ROOT, "deploy/weft.yaml"), "utf8"));
  for (const doc of docs) expect(doc.errors).toEqual([]);
  const sets = docs.map((d) => d.toJS() as DaemonSet).filter((d) => d?.kind === "DaemonSet");
  expect(sets).toHaveLength(1);
  return sets[0]!;
}

/** Where the init container sees the node's `hostPath`. */
function mountOf(ds: DaemonSet, container: Container, hostPath: string): string | undefined {
  const volume = ds.spec.template.spec.volumes.find((v) => v.hostPath?.path === hostPath);
  return container.volumeMounts?.find((m) => m.name === volume?.name)?.mountPath;
}

const envOf = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.value;

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

describe("deploy/weft.yaml", () => {
  const ds = daemonSet();
  const pod = ds.spec.template.spec;
  const init = pod.initContainers.find((c) => c.name === "install-weft")!;

  it("is a DaemonSet beside kube-flannel's, scheduled as kube-flannel's own is", () => {
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

  it("installs onto the node's /opt/cni/bin and /etc/cni/net.d through hostPath mounts", () => {
    expect(mountOf(ds, init, "/opt/cni/bin")).toBeDefined();
    expect(mountOf(ds, init, "/etc/cni/net.d")).toBeDefined();
    expect(envOf(init, "WEFT_BIN_DIR")).toBe(mountOf(ds, init, "/opt/cni/bin"));
    expect(envOf(init, "WEFT_CONF_DIR")).toBe(mountOf(ds, init, "/etc/cni/net.d"));
    for (const v of pod.volumes.filter((v) => v.hostPath)) expect(v.hostPath!.type).toBe("DirectoryOrCreate");
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

  it("ends in an exec-form entrypoint that is the installer, beside the executable and the conflist", () => {
    const final = lines.filter((l) => l.stage === last);
    expect(final.filter((l) => l.op === "ENTRYPOINT").map((l) => JSON.parse(l.args))).toEqual([["/weft/install"]]);
    const copies = final.filter((l) => l.op === "COPY").map((l) => l.args.split(/\s+/).slice(1));
    expect(copies).toEqual([
      ["/src/dist/standalone/weft", "/weft/weft"],
      ["/src/dist/standalone/programs", "/weft/programs"],
      ["/src/scripts/install", "/weft/install"],
      ["/src/conf/10-flannel.conflist", "/weft/10-flannel.conflist"],
    ]);
  });

  it("keeps the build context to sources", () => {
    const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n");
    for (const dir of ["node_modules", "dist", "bin", "gen", "build"]) expect(ignored).toContain(dir);
    for (const needed of ["package.json", "scripts", "lib", "plugins", "ipam", "conf"]) expect(ignored).not.toContain(needed);
  });

  describe("the image's entrypoint, on the layout its COPY lines make", () => {
    const tmp = tempDir("weft-image-");
    const image = join(tmp.dir, "image");
    const host = join(tmp.dir, "host");
    beforeAll(async () => {
      await buildStandalone(join(tmp.dir, "standalone"));
      // Build-stage paths (/src/...) are this checkout, the standalone build standing in for dist/.
      const sources: Record<string, string> = {
        "/src/dist/standalone/weft": join(tmp.dir, "standalone/weft"),
        "/src/dist/standalone/programs": join(tmp.dir, "standalone/programs"),
        "/src/scripts/install": join(ROOT, "scripts/install"),
        "/src/conf/10-flannel.conflist": join(ROOT, "conf/10-flannel.conflist"),
      };
      for (const l of lines.filter((l) => l.stage === last && l.op === "COPY")) {
        const [, from, to] = l.args.split(/\s+/);
        mkdirSync(dirname(join(image, to!)), { recursive: true });
        copyFileSync(sources[from!]!, join(image, to!));
      }
      // COPY keeps the source's mode: the executable and the script are 0755 in the build stage.
      for (const path of ["weft/weft", "weft/install"]) chmodSync(join(image, path), 0o755);
    }, 120_000);
    afterAll(() => tmp.remove());

    it("installs onto the DaemonSet's mounts with the DaemonSet's environment alone", async () => {
      const init = daemonSet().spec.template.spec.initContainers[0]!;
      const env = Object.fromEntries((init.env ?? []).map((e) => [e.name, join(host, e.value)]));
      const cache = { WEFT_CACHE_DIR: join(tmp.dir, "cache") };
      await run(join(image, "weft/install"), [], { env: { PATH: "/usr/bin:/bin", ...cache, ...env } });
      const bin = join(host, envOf(init, "WEFT_BIN_DIR")!);
      expect(readdirSync(bin).sort()).toEqual([...TYPES].sort());
      for (const t of TYPES) expect((await version(join(bin, t), cache)).ok).toBe(true);
      expect(readFileSync(join(host, envOf(init, "WEFT_CONF_DIR")!, "10-flannel.conflist"), "utf8")).toBe(
        readFileSync(join(ROOT, "conf/10-flannel.conflist"), "utf8"),
      );
    });
  });
});
