import { awkwardString, hostileNames, type Random } from "./random.js";
import { CNI_TYPES, type CniType } from "../../plugins/registry.js";

/**
 * Fuzz cases for each weft plugin: a well-formed base invocation, then one to three hostile
 * changes to its config, prevResult, environment, raw stdin or subnet.env. The cases are plain data
 * (JSON), generated in the test and run by driver.ts inside the node's namespace.
 */

export const FUZZ_PLUGINS = CNI_TYPES;
export type FuzzPlugin = CniType;

export interface FuzzCase {
  index: number;
  plugin: FuzzPlugin;
  env: Record<string, string>;
  /** Names removed from the environment. */
  unset: string[];
  stdin: string;
  /** flannel: what subnet.env holds for this case; null: the file is absent. */
  subnetEnv?: string | null;
  /** The changes made to the base invocation, for the failure report. */
  changes: string[];
}

/** Where the cases may point: every path a case can name lies under work (the test's temp dir). */
export interface FuzzContext {
  work: string;
  /** The pod namespace paths cases may use (clean before each case). */
  podNetns: string;
  /** The namespace the driver runs in: passing it as CNI_NETNS must be refused (code 8). */
  nodeNetns: string;
  cniPath: string;
}

export const SUBNET_ENV =
  "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
  "FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** Paths under work that cases may use for dataDir, subnetFile and resolvConf, and nothing else. */
export function safePaths(work: string) {
  return {
    data: `${work}/data`,
    flannelData: `${work}/data/flannel`,
    subnetFile: `${work}/subnet.env`,
    resolvConf: `${work}/resolv.conf`,
    /** A regular file where a directory is expected. */
    plainFile: `${work}/plain-file`,
    /** A symlink to a directory under data, and one to nowhere. */
    linkToDir: `${work}/data-link`,
    dangling: `${work}/dangling-link`,
  };
}

function pathValue(r: Random, work: string): Json {
  const p = safePaths(work);
  return r.pick<Json>([
    p.data,
    `${p.data}/${r.int(0, 3)}`,
    p.plainFile,
    `${p.plainFile}/below`,
    p.linkToDir,
    p.dangling,
    "",
    "relative-dir",
    `${p.data}/${"d".repeat(300)}`,
    `${p.data}/a\u0000b`,
    `${p.data}/../data/x`,
    7,
    null,
    [],
  ]);
}

const PATH_KEYS = new Set(["dataDir", "subnetFile", "resolvConf"]);
const ADDRESS_KEYS = new Set(["subnet", "rangeStart", "rangeEnd", "gateway", "dst", "gw", "address", "hostIP"]);

function badAddress(r: Random): Json {
  return r.pick<Json>([
    "10.50.0.0/33",
    "10.50.0.1/24",
    "10.50.0.0/31",
    "10.50.0.0/32",
    "10.50.0.0",
    "fd50::/129",
    "fd50::/127",
    "::/0",
    "0.0.0.0/0",
    "255.255.255.255/32",
    "10.50.0.0/24 ",
    " 10.50.0.0/24",
    "10.50.0.0/024",
    "010.050.000.000/24",
    "10.50.0.256/24",
    "1.2.3.4/-1",
    "fe80::1%eth0/64",
    "::ffff:10.50.0.0/120",
    "10.51.0.0/24",
    "10.50.0.0/16",
    "fd50::/64",
    "10.50.0.1",
    "10.50.0.255",
    "garbage",
    "",
  ]);
}

function wrongValue(r: Random): Json {
  return r.weighted<() => Json>([
    [3, () => r.pick<Json>([0, -1, 1.5, 2 ** 31, 2 ** 32, 2 ** 53 + 2, 1e308, -1e308, 65536, 4095])],
    [2, () => r.pick<Json>([true, false, null])],
    [3, () => awkwardString(r)],
    [2, () => r.pick<Json>([[], {}, [1, 2], { a: 1 }, [[[]]], [null], [{}]])],
    [1, () => Array.from({ length: r.pick([100, 2000]) }, (_, i) => ({ subnet: `10.${60 + (i >> 8)}.${i & 255}.0/24` }))],
  ])();
}

/** Every path to a value in the object, as key lists. */
function allPaths(value: Json, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []) {
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      out.push([...prefix, i]);
      allPaths(v, [...prefix, i], out);
    });
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      out.push([...prefix, k]);
      allPaths(v, [...prefix, k], out);
    }
  }
  return out;
}

function parentOf(root: Json, path: Array<string | number>): Record<string | number, Json> | undefined {
  let v: Json = root;
  for (const k of path.slice(0, -1)) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string | number, Json>)[k]!;
  }
  return v !== null && typeof v === "object" ? (v as Record<string | number, Json>) : undefined;
}

/** Placeholders swapped for deeply nested JSON after stringify (JSON.stringify itself would overflow). */
const DEEP = "\u0001DEEP:";

function mutateConfig(r: Random, conf: JsonObject, work: string, changes: string[]): void {
  const paths = allPaths(conf);
  if (paths.length === 0) return;
  const path = r.pick(paths);
  const parent = parentOf(conf, path);
  if (!parent) return;
  const key = path[path.length - 1]!;
  const where = path.join(".");
  const kind = r.weighted<string>([
    [5, "wrong"],
    [2, "delete"],
    [2, "unknown"],
    [1, "deep"],
    [2, "version"],
    [3, "semantic"],
  ]);
  switch (kind) {
    case "wrong":
      if (typeof key === "string" && PATH_KEYS.has(key)) {
        parent[key] = pathValue(r, work);
      } else {
        parent[key] = wrongValue(r);
      }
      changes.push(`${where} = ${JSON.stringify(parent[key])?.slice(0, 60)}`);
      break;
    case "delete":
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
      changes.push(`delete ${where}`);
      break;
    case "unknown": {
      const target = parent[key];
      if (target && typeof target === "object" && !Array.isArray(target)) {
        const name = r.pick(["unknownKey", "__proto__", "constructor", "prevResult", "cni.dev/valid-attachments", "runtimeConfig", "args"]);
        target[name] = wrongValue(r);
        changes.push(`${where}.${name} = ${JSON.stringify(target[name])?.slice(0, 60)}`);
      } else {
        parent[key] = { [r.pick(["x", "subnet", "type"])]: wrongValue(r) };
        changes.push(`${where} = object`);
      }
      break;
    }
    case "deep": {
      const depth = r.pick([64, 5000, 200_000]);
      parent[key] = `${DEEP}${depth}`;
      changes.push(`${where} nested ${depth} deep`);
      break;
    }
    case "version":
      conf.cniVersion = r.pick<Json>([
        "0.1.0",
        "0.2.0",
        "0.3.0",
        "0.3.1",
        "0.4.0",
        "1.0.0",
        "1.1.0",
        "9.9.9",
        "",
        "1.0",
        "v1.0.0",
        "1.0.0 ",
        "1.1.0-rc1",
        null,
        1,
        ["1.0.0"],
      ]);
      changes.push(`cniVersion = ${JSON.stringify(conf.cniVersion)}`);
      break;
    case "semantic": {
      if (typeof key === "string" && ADDRESS_KEYS.has(key)) {
        parent[key] = badAddress(r);
        changes.push(`${where} = ${JSON.stringify(parent[key])}`);
      } else if (typeof key === "string" && PATH_KEYS.has(key)) {
        parent[key] = pathValue(r, work);
        changes.push(`${where} = ${JSON.stringify(parent[key])}`);
      } else if (typeof key === "string" && ["name", "bridge", "type", "ifname", "containerID", "interface", "sandbox"].includes(key)) {
        parent[key] = r.pick(hostileNames());
        changes.push(`${where} = ${JSON.stringify(parent[key])?.slice(0, 60)}`);
      } else if (Array.isArray(parent[key]) && parent[key].length > 0) {
        const list = parent[key];
        list.push(structuredClone(list[0]!));
        changes.push(`${where} duplicated entry 0 (overlap)`);
      } else {
        parent[key] = typeof parent[key] === "number" ? r.pick([-1, 0, 65535, 65536, 2 ** 32, 4094, 4095]) : wrongValue(r);
        changes.push(`${where} = ${JSON.stringify(parent[key])?.slice(0, 60)}`);
      }
      break;
    }
  }
}

function render(conf: JsonObject): string {
  return JSON.stringify(conf).replace(/"\\u0001DEEP:(\d+)"/g, (_, d: string) => `${"[".repeat(Number(d))}${"]".repeat(Number(d))}`);
}

function mutateStdin(r: Random, text: string, changes: string[]): string {
  const kind = r.pick(["truncate", "empty", "null", "array", "string", "garbage", "bom", "duplicate", "whitespace", "number"]);
  changes.push(`stdin: ${kind}`);
  switch (kind) {
    case "truncate":
      return text.slice(0, r.int(0, Math.max(0, text.length - 1)));
    case "empty":
      return "";
    case "null":
      return "null";
    case "array":
      return `[${text}]`;
    case "string":
      return JSON.stringify(text);
    case "garbage":
      return Array.from({ length: r.int(1, 200) }, () => String.fromCharCode(r.int(0, 255))).join("");
    case "bom":
      return `\ufeff${text}`;
    case "duplicate":
      return text.replace(/^\{/, '{"name":"dup-first",');
    case "whitespace":
      return `${" ".repeat(r.pick([1, 100_000]))}${text}\n\n`;
    default:
      return "12345";
  }
}

function mutateEnv(r: Random, env: Record<string, string>, unset: string[], ctx: FuzzContext, changes: string[]): void {
  const name = r.pick(["CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_ARGS", "CNI_PATH", "unset"]);
  let value: string;
  switch (name) {
    case "CNI_COMMAND":
      value = r.pick(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "add", "BOGUS", "ADD ", "", "ADD\u0000"]);
      break;
    case "CNI_CONTAINERID":
    case "CNI_IFNAME":
      value = r.chance(0.8) ? r.pick(hostileNames()) : r.pick(["lo", "cni0", "eth0", "e".repeat(15), "e".repeat(16), "a", "A-b_c.d"]);
      break;
    case "CNI_NETNS":
      // Never a reference to the real host's namespace (/proc/1/ns/net): only the node's own (code 8) and non-namespaces.
      value = r.pick([
        "",
        "relative/ns",
        "/nonexistent/ns",
        `${ctx.work}/plain-file`,
        "/proc/self/ns/net",
        ctx.nodeNetns,
        "/proc/self/ns/mnt",
        "/dev/null",
        `${ctx.podNetns}\u0000x`,
        ctx.podNetns,
      ]);
      break;
    case "CNI_ARGS":
      value = r.pick([
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc",
        "IP=10.50.0.7",
        "IP=10.50.0.300",
        "IP=fd00::1",
        "IgnoreUnknown=1;IP=10.50.0.1",
        "IgnoreUnknown=1;IP=10.50.0.255",
        "IgnoreUnknown=1;IP=",
        "a",
        "=;=",
        "K=V=W",
        ";",
        "MAC=00:11:22:33:44:55",
        "MAC=zz",
        "IgnoreUnknown=1;MAC=ff:ff:ff:ff:ff:ff",
        `IgnoreUnknown=1;${"K=V;".repeat(2000)}X=Y`,
        "IgnoreUnknown=1;IP=10.50.0.7,10.50.0.8",
        "IgnoreUnknown=1;IP=10.50.0.7/24",
        r.pick(hostileNames()),
      ]);
      break;
    case "CNI_PATH":
      value = r.pick(["", "/nonexistent", `${ctx.cniPath}:/nonexistent`, `/nonexistent:${ctx.cniPath}`, ":::", ctx.work]);
      break;
    default: {
      const gone = r.pick(["CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_PATH"]);
      delete env[gone];
      unset.push(gone);
      changes.push(`unset ${gone}`);
      return;
    }
  }
  env[name] = value;
  changes.push(`${name}=${JSON.stringify(value).slice(0, 60)}`);
}

function mutateSubnetEnv(r: Random, text: string, changes: string[]): string | null {
  const kind = r.pick([
    "truncate",
    "drop-line",
    "bad-value",
    "crlf",
    "quotes",
    "empty",
    "missing",
    "garbage",
    "multi",
    "mtu",
    "small",
    "family",
    "duplicate-key",
  ]);
  changes.push(`subnet.env: ${kind}`);
  const lines = text.trimEnd().split("\n");
  switch (kind) {
    case "truncate":
      return text.slice(0, r.int(0, text.length - 1));
    case "drop-line":
      lines.splice(r.int(0, lines.length - 1), 1);
      return `${lines.join("\n")}\n`;
    case "bad-value": {
      const i = r.int(0, lines.length - 1);
      lines[i] = `${lines[i]!.split("=")[0]}=${awkwardString(r)}`;
      return `${lines.join("\n")}\n`;
    }
    case "crlf":
      return text.replace(/\n/g, "\r\n");
    case "quotes":
      return text.replace(/=(.*)/g, '="$1"');
    case "empty":
      return "";
    case "missing":
      return null;
    case "garbage":
      return Array.from({ length: r.int(1, 300) }, () => String.fromCharCode(r.int(0, 255))).join("");
    case "multi":
      return text.replace("FLANNEL_SUBNET=10.244.1.1/24", "FLANNEL_SUBNET=10.244.1.1/24,10.244.1.129/25");
    case "mtu":
      return text.replace("FLANNEL_MTU=1450", `FLANNEL_MTU=${r.pick(["0", "67", "65536", "99999999999", "-1", "1e3", ""])}`);
    case "small":
      return text.replace("FLANNEL_SUBNET=10.244.1.1/24", `FLANNEL_SUBNET=10.244.1.1/${r.pick(["31", "32", "30", "0"])}`);
    case "family":
      return text.replace("FLANNEL_SUBNET=10.244.1.1/24", "FLANNEL_SUBNET=fd00:10:244:1::1/64");
    default:
      return `${text}FLANNEL_SUBNET=10.244.9.1/24\n`;
  }
}

function prevResult(ctx: FuzzContext, version: string): JsonObject {
  return {
    cniVersion: version,
    interfaces: [
      { name: "fzbr0", mac: "02:00:00:00:00:01" },
      { name: "veth0123abcd", mac: "02:00:00:00:00:02" },
      { name: "eth0", mac: "02:00:00:00:00:03", sandbox: ctx.podNetns },
    ],
    ips: [{ address: "10.50.0.2/24", gateway: "10.50.0.1", interface: 2 }],
    routes: [{ dst: "0.0.0.0/0", gw: "10.50.0.1" }],
    dns: {},
  };
}

/** The well-formed invocation each case starts from. */
function base(plugin: FuzzPlugin, r: Random, ctx: FuzzContext): { conf: JsonObject; verb: string } {
  const p = safePaths(ctx.work);
  const version = r.pick(["0.3.1", "0.4.0", "1.0.0", "1.1.0", "1.1.0", "1.0.0"]);
  const verb = r.weighted<string>([
    [12, "ADD"],
    [3, "DEL"],
    [2, "CHECK"],
    [2, "GC"],
    [1, "STATUS"],
    [1, "VERSION"],
  ]);
  const ranges: Json = r.chance(0.3)
    ? [[{ subnet: "10.50.0.0/24" }], [{ subnet: "fd50::/64" }]]
    : [[{ subnet: "10.50.0.0/25" }, { subnet: "10.50.0.128/25", rangeStart: "10.50.0.130", rangeEnd: "10.50.0.200", gateway: "10.50.0.129" }]];
  const ipam: JsonObject = { type: "host-local", dataDir: p.data, ranges, routes: [{ dst: "10.0.0.0/8" }] };
  if (r.chance(0.2)) ipam.resolvConf = p.resolvConf;
  let conf: JsonObject;
  switch (plugin) {
    case "host-local":
      conf = { cniVersion: version, name: "fz-hl", type: "bridge", ipam };
      break;
    case "bridge":
      conf = {
        cniVersion: version,
        name: "fz-br",
        type: "bridge",
        bridge: "fzbr0",
        isGateway: true,
        isDefaultGateway: r.chance(0.5),
        ipMasq: r.chance(0.6),
        hairpinMode: r.chance(0.5),
        mtu: r.pick([0, 1400, 1500]),
        macspoofchk: r.chance(0.2),
        ipam,
      };
      break;
    case "flannel":
      conf = {
        cniVersion: version,
        name: "fz-fl",
        type: "flannel",
        subnetFile: p.subnetFile,
        dataDir: p.flannelData,
        delegate: { hairpinMode: true, isDefaultGateway: true, bridge: "fzfl0" },
        ipam: { dataDir: p.data },
      };
      break;
    case "portmap":
      conf = {
        cniVersion: version,
        name: "fz-pm",
        type: "portmap",
        capabilities: { portMappings: true },
        snat: true,
        ...(r.chance(0.3) ? { backend: "iptables" } : {}),
        runtimeConfig: {
          portMappings: [
            { hostPort: 8080, containerPort: 80, protocol: "tcp" },
            { hostPort: 5353, containerPort: 53, protocol: "udp", hostIP: "127.0.0.1" },
          ],
        },
        prevResult: prevResult(ctx, version),
      };
      break;
    case "loopback":
      conf = { cniVersion: version, name: "fz-lo", type: "loopback" };
      if (r.chance(0.3)) conf.prevResult = prevResult(ctx, version);
      break;
  }
  if (verb === "GC") {
    conf["cni.dev/valid-attachments"] = r.pick<Json>([[], [{ containerID: "fuzz-keep", ifname: "eth0" }], [{ containerID: 1 }], "all", null]);
  }
  if (plugin === "bridge" && (verb === "CHECK" || verb === "DEL")) conf.prevResult = prevResult(ctx, version);
  return { conf, verb };
}

export function generateCases(plugin: FuzzPlugin, r: Random, count: number, ctx: FuzzContext): FuzzCase[] {
  const cases: FuzzCase[] = [];
  for (let index = 0; index < count; index++) {
    const { conf, verb } = base(plugin, r, ctx);
    const changes: string[] = [];
    const env: Record<string, string> = {
      CNI_COMMAND: verb,
      CNI_CONTAINERID: `fuzz-${index}`,
      CNI_NETNS: ctx.podNetns,
      CNI_IFNAME: "eth0",
      CNI_PATH: ctx.cniPath,
      CNI_ARGS: "",
    };
    const unset: string[] = [];
    let subnetEnv: string | null | undefined = plugin === "flannel" ? SUBNET_ENV : undefined;
    // Most cases change the config; some only the environment, stdin or subnet.env.
    const n = r.int(1, 3);
    for (let i = 0; i < n; i++) {
      const target = r.weighted<string>([
        [8, "config"],
        [3, "env"],
        [plugin === "flannel" ? 4 : 0, "subnet.env"],
        [conf.prevResult ? 3 : 0, "prevResult"],
        [1, "none"],
      ]);
      if (target === "config") mutateConfig(r, conf, ctx.work, changes);
      else if (target === "env") mutateEnv(r, env, unset, ctx, changes);
      else if (target === "subnet.env") subnetEnv = mutateSubnetEnv(r, subnetEnv ?? SUBNET_ENV, changes);
      else if (target === "prevResult") mutateConfig(r, conf.prevResult as JsonObject, ctx.work, changes.length ? changes : changes);
    }
    let stdin = render(conf);
    if (r.chance(0.08)) stdin = mutateStdin(r, stdin, changes);
    cases.push({ index, plugin, env, unset, stdin, ...(subnetEnv !== undefined ? { subnetEnv } : {}), changes });
  }
  return cases;
}
