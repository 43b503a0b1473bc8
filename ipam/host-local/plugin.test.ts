import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dispatch } from "../../lib/cni/skel.js";
import { hostLocalPlugin } from "./plugin.js";

// The plugin run in-process, as a weft plugin that delegates to host-local may run it: many
// invocations in one process must exclude each other like separate processes do.

let root: string;
const savedCache = process.env.WEFT_CACHE_DIR;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "weft-host-local-inproc-"));
  process.env.WEFT_CACHE_DIR = join(root, "cache");
});

afterAll(() => {
  if (savedCache === undefined) delete process.env.WEFT_CACHE_DIR;
  else process.env.WEFT_CACHE_DIR = savedCache;
  rmSync(root, { recursive: true, force: true });
});

async function invoke(env: Record<string, string>, config: Record<string, unknown>) {
  let stdout = "";
  let stderr = "";
  const code = await dispatch(hostLocalPlugin(), {
    getenv: (name) => ({ CNI_PATH: "/opt/cni/bin", CNI_NETNS: "/var/run/netns/x", ...env })[name],
    readStdin: () => Buffer.from(JSON.stringify(config)),
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
  });
  return { code, stdout, stderr, json: stdout ? (JSON.parse(stdout) as Record<string, unknown>) : undefined };
}

const config = () => ({
  cniVersion: "1.1.0",
  name: "inproc",
  type: "bridge",
  ipam: { type: "host-local", dataDir: join(root, "data"), ranges: [[{ subnet: "10.55.0.0/24" }]] },
});

describe("host-local in one process", () => {
  it("gives concurrent ADDs distinct addresses and releases them all on DEL", async () => {
    const ids = Array.from({ length: 24 }, (_, i) => `in-${i}`);
    const adds = await Promise.all(ids.map((id) => invoke({ CNI_COMMAND: "ADD", CNI_CONTAINERID: id, CNI_IFNAME: "eth0" }, config())));
    for (const out of adds) expect(out.code, out.stdout).toBe(0);
    const addresses = adds.map((out) => (out.json!.ips as { address: string }[])[0]!.address);
    expect(new Set(addresses).size).toBe(24);
    expect((await invoke({ CNI_COMMAND: "STATUS" }, config())).code).toBe(0);
    const dels = await Promise.all(ids.map((id) => invoke({ CNI_COMMAND: "DEL", CNI_CONTAINERID: id, CNI_IFNAME: "eth0" }, config())));
    for (const out of dels) expect(out.code, out.stdout).toBe(0);
    expect(readdirSync(join(root, "data", "inproc")).sort()).toEqual(["last_reserved_ip.0", "lock"]);
  });

  it("logs what GC released", async () => {
    await invoke({ CNI_COMMAND: "ADD", CNI_CONTAINERID: "gone", CNI_IFNAME: "eth0" }, config());
    const out = await invoke({ CNI_COMMAND: "GC" }, { ...config(), "cni.dev/valid-attachments": [] });
    expect(out.code).toBe(0);
    expect(out.stderr).toMatch(/^host-local: GC released 10\.55\.0\.\d+\n$/);
  });
});
