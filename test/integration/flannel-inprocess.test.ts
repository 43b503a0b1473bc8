import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { pathWithTestNode, scriptProgram, WEFT_FORM, weftProgram } from "../helpers/executables.js";
import { all, referencePlugins, rootUser } from "../helpers/prerequisites.js";

/**
 * One process per pod: weft's flannel runs a delegate that is weft's own executable of the same
 * build in its own process. The weft delegate here is flannel itself (flannel -> flannel ->
 * reference bridge -> host-local): the outer flannel (WEFT_BIN's) either runs the inner one
 * in-process or executes it, and both must give the same stdout, exit status, stderr and pod. The
 * script form trusts a delegate by its banner: in-process, CNI_PATH holds an exact copy of the
 * file; executed, the same file with another version on its banner line, so the bundle does not
 * claim it. The standalone executable trusts only itself, by inode: in-process, CNI_PATH holds a
 * symlink to it; executed, a copy of it.
 */
const REFERENCE_PLUGINS = "/usr/lib/cni";
const FLANNEL = weftProgram("flannel");
/** The probe is a banner over a body of its own: only the script form reads banners. */
const SCRIPT_FLANNEL = scriptProgram("flannel");
const needs = all(rootUser(), referencePlugins("bridge", "host-local"));

let work: string;
let namespaces: string[];
let serial = 0;

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8" });
}

function addNamespace(role: string): string {
  const name = `wft-fi-${process.pid}-${++serial}-${role}`;
  ip("netns", "add", name);
  namespaces.push(name);
  return name;
}

type Mode = "in-process" | "exec" | "probe";

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), "weft-flannel-inproc-"));
  namespaces = [];
  for (const mode of ["in-process", "exec", "probe"] as Mode[]) mkdirSync(join(work, mode));
  if (WEFT_FORM === "script") {
    const flannel = readFileSync(FLANNEL, "utf8");
    const banner = flannel.split("\n", 2)[1]!;
    expect(banner).toMatch(/^\/\/ weft \S+ flannel$/);
    copyFileSync(FLANNEL, join(work, "in-process", "flannel"));
    writeFileSync(join(work, "exec", "flannel"), flannel.replace(banner, banner.replace(/^(\/\/ weft \S+)/, "$1-other-build")), { mode: 0o755 });
  } else {
    symlinkSync(FLANNEL, join(work, "in-process", "flannel"));
    copyFileSync(FLANNEL, join(work, "exec", "flannel"));
  }
  // bin/flannel's banner over a body that fails if anything executes it.
  const [shebang, banner] = readFileSync(SCRIPT_FLANNEL, "utf8").split("\n", 2);
  expect(banner).toMatch(/^\/\/ weft \S+ flannel$/);
  writeFileSync(join(work, "probe", "flannel"), `${shebang}\n${banner}\nprocess.stdout.write('{"code":999,"msg":"executed"}');process.exit(1);\n`, {
    mode: 0o755,
  });
  writeFileSync(join(work, "outer.env"), "FLANNEL_NETWORK=10.250.0.0/16\nFLANNEL_SUBNET=10.250.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
  writeFileSync(join(work, "inner.env"), "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n");
});

afterEach(() => {
  for (const ns of namespaces.reverse()) spawnSync("ip", ["netns", "delete", ns]);
  rmSync(work, { recursive: true, force: true });
});

function netconf(): Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name: "cbr0",
    type: "flannel",
    subnetFile: join(work, "outer.env"),
    dataDir: join(work, "outer"),
    delegate: { type: "flannel", subnetFile: join(work, "inner.env"), dataDir: join(work, "inner"), delegate: { hairpinMode: true } },
    ipam: { dataDir: join(work, "networks") },
  };
}

/**
 * Runs weft's flannel in `nodeNs` with CNI_PATH = the mode's directory, then the reference plugins:
 * the form under test, bin/flannel for the probe.
 */
function cni(mode: Mode, verb: string, nodeNs: string, podNs: string | undefined, env: Record<string, string> = {}, conf = netconf()) {
  const out = spawnSync("ip", ["netns", "exec", nodeNs, mode === "probe" ? SCRIPT_FLANNEL : FLANNEL], {
    env: {
      PATH: pathWithTestNode("/usr/bin:/bin"),
      CNI_COMMAND: verb,
      CNI_CONTAINERID: "ctr-1",
      CNI_NETNS: podNs ? `/run/netns/${podNs}` : "",
      CNI_IFNAME: "eth0",
      CNI_PATH: `${join(work, mode)}:${REFERENCE_PLUGINS}`,
      ...env,
    },
    input: JSON.stringify(conf),
    encoding: "utf8",
  });
  return { status: out.status, stdout: out.stdout, stderr: out.stderr };
}

/** What differs between two runs by nature: MACs (and the link-local addresses made from them), veth and namespace names. */
function normalize(text: string, podNs: string): string {
  return text
    .replaceAll(podNs, "<pod>")
    .replace(/wft-fi-\d+-\d+-node/g, "<node>")
    .replace(/fe80::[0-9a-f:]+/g, "<link-local>")
    .replace(/([0-9a-f]{2}:){5}[0-9a-f]{2}/g, "<mac>")
    .replace(/veth[0-9a-f]{8}/g, "<veth>");
}

function podState(podNs: string): string {
  const addresses = ip("-n", podNs, "-o", "addr", "show", "dev", "eth0")
    .replace(/^\d+: /gm, "")
    .replace(/valid_lft.*$/gm, "");
  const link = ip("-n", podNs, "-o", "link", "show", "dev", "eth0")
    .replace(/^\d+: /, "")
    .replace(/@if\d+/, "");
  return normalize(`${link}\n${addresses}\n${ip("-n", podNs, "route", "show")}`, podNs);
}

function leftovers(): string[] {
  const dirs = ["outer", "inner", join("networks", "cbr0")].map((d) => join(work, d));
  return dirs.flatMap((d) => (existsSync(d) ? readdirSync(d).filter((f) => f !== "lock" && !f.startsWith("last_reserved")) : []));
}

describe.skipIf(needs.skip)(needs.title(`in-process delegation through weft's flannel (${WEFT_FORM} form)`), () => {
  it("ADD, CHECK and DEL give the same outputs and the same pod in-process as executed", () => {
    const seen: Record<string, unknown>[] = [];
    for (const mode of ["exec", "in-process"] as Mode[]) {
      // host-local remembers its last address: each run starts from an empty store.
      rmSync(join(work, "networks"), { recursive: true, force: true });
      const nodeNs = addNamespace("node");
      const pod = addNamespace("pod");
      const add = cni(mode, "ADD", nodeNs, pod);
      expect(add.status, add.stdout + add.stderr).toBe(0);
      const result = JSON.parse(add.stdout);
      expect(result.ips).toEqual([{ address: "10.244.1.2/24", gateway: "10.244.1.1", interface: 2 }]);
      const pods = podState(pod);
      expect(pods).toContain("mtu 1400");
      const saved = ["outer", "inner"].map((d) => readFileSync(join(work, d, "ctr-1"), "utf8"));
      const check = cni(mode, "CHECK", nodeNs, pod, {}, { ...netconf(), prevResult: result });
      const del = cni(mode, "DEL", nodeNs, pod);
      expect(del.status, del.stdout + del.stderr).toBe(0);
      expect(leftovers()).toEqual([]);
      seen.push({
        add: normalize(add.stdout, pod),
        addStderr: normalize(add.stderr, pod),
        pod: pods,
        saved,
        // Debian's bridge cannot CHECK flannel's gateway-less routes: the same refusal both ways.
        check: { ...check, stdout: normalize(check.stdout, pod), stderr: normalize(check.stderr, pod) },
        del,
      });
    }
    expect(seen[1]).toEqual(seen[0]);
  });

  it.each([
    ["a netns that does not exist", { CNI_NETNS: "/run/netns/wft-fi-does-not-exist" }, "ADD"],
    ["no CNI_IFNAME", { CNI_IFNAME: "" }, "ADD"],
    ["an interface name the kernel refuses", { CNI_IFNAME: "eth0.with.dots" }, "ADD"],
    ["STATUS", {}, "STATUS"],
  ])("%s: the same error in-process as executed", (_, env, verb) => {
    const outputs = (["exec", "in-process"] as Mode[]).map((mode) => {
      const nodeNs = addNamespace("node");
      const out = cni(mode, verb, nodeNs, undefined, { CNI_NETNS: "", ...env });
      return { ...out, leftovers: leftovers() };
    });
    expect(outputs[0]!.status).toBe(1);
    expect(outputs[1]).toEqual(outputs[0]);
  });

  it("a missing subnet.env in the delegate: code 11 both ways, nothing left behind", () => {
    rmSync(join(work, "inner.env"));
    const outputs = (["exec", "in-process"] as Mode[]).map((mode) => {
      const out = cni(mode, "ADD", addNamespace("node"), addNamespace("pod"));
      return { ...out, stdout: out.stdout.replace(/wft-fi-\S+-pod/g, "<pod>"), leftovers: leftovers() };
    });
    expect(JSON.parse(outputs[0]!.stdout)).toMatchObject({ code: 11 });
    expect(outputs[1]).toEqual(outputs[0]);
  });

  it("really runs in-process: a weft executable of this build is never executed (bin/flannel: a banner over another body)", () => {
    const nodeNs = addNamespace("node");
    const pod = addNamespace("pod");
    const add = cni("probe", "ADD", nodeNs, pod);
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(JSON.parse(add.stdout).ips[0].address).toBe("10.244.1.2/24");
    expect(cni("probe", "DEL", nodeNs, pod).status).toBe(0);
    expect(leftovers()).toEqual([]);
  });
});
