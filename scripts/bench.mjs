#!/usr/bin/env node
// Latency of a pod's network with weft against the Go reference, through the CNI project's libcni
// (the conformance suite's driver), the way a kubelet's runtime runs plugins: a clean environment with
// PATH and the CNI_ variables only. Never run by the tests: `make bench`.
//
//   node scripts/bench.mjs [--rounds 30] [--parallel 64] [--json build/bench.json] [--no-parts]
//                          [--form LABEL=DIR ...] [--bin DIR]
//
// --form names a set of weft's executables to measure, side by side with the others and the Go
// reference in the same run: `--form script=bin --form node=dist/node --form bun=dist/bun` (a
// standalone form is a directory holding its `weft`); `--bin DIR` alone is one form. Default: bin/.
//
// For each plugin set it makes a node network namespace of its own, and per round a pod namespace:
// ADD, CHECK and DEL of the network list are timed one by one (median and p95). Then N pods are added
// at once and deleted at once, and the peak RSS of each plugin process is taken. Bare `node -e 0` is
// the floor, and each form's VERSION its own start-up. For the first form also its four processes of
// a pod executed directly, without the driver, and the kernel's own time to delete a veth pair (the
// part of every DEL no plugin can save). Then each plugin of the first form on its own against its Go
// counterpart (host-local alone, bridge + host-local as flannel renders it, portmap with a mapping) and
// the flannel chain with weft's delegates executed instead of run in-process (--no-parts skips these).
// Everything it makes is removed at the end.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { copyFileSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { readWeftBanner } from "../lib/executable/banner.ts";
import { CNI_TYPES as PLUGIN_TYPES } from "../plugins/registry.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const ROUNDS = Number(arg("rounds", 30));
const PARALLEL = Number(arg("parallel", 64));
const JSON_OUT = resolve(root, arg("json", "build/bench.json"));
/** The weft forms to measure, in order: [label, directory]. */
function forms() {
  const given = process.argv.flatMap((a, i) => (a === "--form" ? [process.argv[i + 1] ?? ""] : []));
  if (given.length === 0) {
    const dir = resolve(root, arg("bin", "bin"));
    return [[readWeftBanner(join(dir, "flannel")) ? "script" : "standalone", dir]];
  }
  return given.map((spec) => {
    const m = /^([a-z][a-z0-9]{0,15})=(.+)$/.exec(spec);
    if (!m) throw new Error(`--form ${spec}: expected LABEL=DIR, the label lower-case letters and digits`);
    return [m[1], resolve(root, m[2])];
  });
}
const REF_BIN = "/usr/lib/cni";
const PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

if (process.getuid?.() !== 0) {
  console.error("bench: needs root (network namespaces)");
  process.exit(2);
}

const tag = arg("tag", `wb${process.pid % 10000}`);
let work;
const namespaces = new Set();

function sh(cmd, args, options = {}) {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], ...options });
}

function addNetns(name) {
  sh("ip", ["netns", "add", name]);
  namespaces.add(name);
  sh("ip", ["-n", name, "link", "set", "lo", "up"]);
}

function delNetns(name) {
  spawnSync("ip", ["netns", "delete", name]);
  namespaces.delete(name);
}

function cleanup() {
  for (const ns of [...namespaces]) delNetns(ns);
  if (work) rmSync(work, { recursive: true, force: true });
}
process.on("exit", cleanup);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

function buildDriver() {
  const driver = join(work, "driver");
  sh("go", ["build", "-o", driver, "./conformance/driver"], {
    cwd: root,
    env: { ...process.env, GO111MODULE: "off", GOPATH: "/usr/share/gocode", GOFLAGS: "", GOCACHE: join(root, "build/gocache") },
  });
  return driver;
}

/** The default flannel conflist with its state redirected into the bench's work dir. */
function weftConflist(dir) {
  const conflist = JSON.parse(readFileSync(join(root, "conf/10-flannel.conflist"), "utf8"));
  delete conflist.cniVersions;
  conflist.plugins[0] = {
    ...conflist.plugins[0],
    subnetFile: join(dir, "subnet.env"),
    dataDir: join(dir, "flannel"),
    ipam: { dataDir: join(dir, "networks") },
  };
  return conflist;
}

/** The same network for the Go reference: the bridge config flannel renders, then portmap. */
function referenceConflist(dir) {
  return {
    name: "cbr0",
    cniVersion: "1.0.0",
    plugins: [
      {
        type: "bridge",
        mtu: 1450,
        ipMasq: false,
        isGateway: true,
        hairpinMode: true,
        isDefaultGateway: true,
        // The route names its gateway: the Go bridge's CHECK fails on the gateway-less route flannel
        // renders (conformance/DIFFERENCES.md), though the kernel route is the same.
        ipam: {
          type: "host-local",
          dataDir: join(dir, "networks"),
          ranges: [[{ subnet: "10.244.1.0/24" }]],
          routes: [{ dst: "10.244.0.0/16", gw: "10.244.1.1" }],
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
}

/** The bridge delegate flannel renders from the bench's subnet.env, as a one-plugin list. */
function bridgeConflist(dir) {
  return { name: "cbr0", cniVersion: "1.0.0", plugins: [referenceConflist(dir).plugins[0]] };
}

/** host-local alone, as the main plugin of a list: both host-locals read their config from `ipam`. */
function hostLocalConflist(dir) {
  const { ipam } = referenceConflist(dir).plugins[0];
  return { name: "cbr0", cniVersion: "1.0.0", plugins: [{ type: "host-local", ipam }] };
}

const PORT_MAPPING = { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: "tcp" }] };

/**
 * A bin dir where weft's delegates carry another build's banner: flannel then executes bridge, and
 * bridge executes host-local, as a separate Node.js process each (the cost in-process delegation saves).
 */
function executingBinDir(weftBin) {
  const dir = join(work, "weft-exec-bin");
  mkdirSync(dir);
  for (const type of PLUGIN_TYPES) {
    const text = readFileSync(join(weftBin, type), "utf8");
    const renamed = type === "flannel" ? text : text.replace(/^(#![^\n]*\n\/\/ weft \S+)/, "$1-executed");
    writeFileSync(join(dir, type), renamed, { mode: 0o755 });
  }
  return dir;
}

function prepare(name, binDir, conflistOf, capArgs, kind = name.startsWith("ref") ? "ref" : "part") {
  const dir = join(work, name);
  mkdirSync(join(dir, "conf"), { recursive: true });
  writeFileSync(join(dir, "subnet.env"), "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
  writeFileSync(join(dir, "conf/10-bench.conflist"), JSON.stringify(conflistOf(dir), null, 2));
  const node = `${tag}-${name}`;
  addNetns(node);
  return { name, dir, node, binDir, capArgs, kind };
}

function driverEnv(set) {
  const env = { PATH: PATH_ENV, NETCONFPATH: join(set.dir, "conf"), CNI_PATH: set.binDir, CNI_CACHE_DIR: join(set.dir, "cache") };
  if (set.capArgs) env.CAP_ARGS = JSON.stringify(set.capArgs);
  return env;
}

/** One driver call (this process runs inside the node namespace), timed from spawn to exit. */
function timedDriver(set, driver, verb, pod) {
  const started = process.hrtime.bigint();
  const out = spawnSync(driver, [verb, "cbr0", pod, `/var/run/netns/${pod}`, "eth0"], { env: driverEnv(set), encoding: "utf8" });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  // The Go plugins' CHECK fails on some healthy pods (conformance/DIFFERENCES.md): counted, not fatal.
  if (out.status !== 0 && verb !== "check") throw new Error(`driver ${verb} ${pod} failed: ${out.stdout}${out.stderr}`);
  return { ms, ok: out.status === 0, stdout: out.stdout };
}

function asyncDriver(set, driver, verb, pod) {
  return new Promise((resolveRun) => {
    const child = spawn(driver, [verb, "cbr0", pod, `/var/run/netns/${pod}`, "eth0"], {
      env: driverEnv(set),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.on("close", (code) => resolveRun({ ok: code === 0, stdout }));
  });
}

const median = (xs) => quantile(xs, 0.5);
function quantile(xs, q) {
  const sorted = [...xs].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}
const stats = (xs) => ({ median: round(median(xs)), p95: round(quantile(xs, 0.95)), n: xs.length });
const round = (x) => Math.round(x * 10) / 10;

function sequential(set, driver) {
  const times = { ADD: [], CHECK: [], DEL: [], checkFailures: 0 };
  for (let i = 0; i < ROUNDS + 2; i++) {
    const pod = `${tag}-${set.name}-s${i}`;
    addNetns(pod);
    const add = timedDriver(set, driver, "add", pod);
    const check = timedDriver(set, driver, "check", pod);
    const del = timedDriver(set, driver, "del", pod);
    delNetns(pod);
    if (i < 2) continue; // warm-up: the first ADD creates cni0 and the addon cache
    times.ADD.push(add.ms);
    times.CHECK.push(check.ms);
    if (!check.ok) times.checkFailures++;
    times.DEL.push(del.ms);
  }
  return times;
}

async function parallel(set, driver) {
  const pods = Array.from({ length: PARALLEL }, (_, i) => `${tag}-${set.name}-p${i}`);
  for (const pod of pods) addNetns(pod);
  let started = process.hrtime.bigint();
  const adds = await Promise.all(pods.map((pod) => asyncDriver(set, driver, "add", pod)));
  const addWall = Number(process.hrtime.bigint() - started) / 1e6;
  const addresses = adds.filter((r) => r.ok).map((r) => JSON.parse(r.stdout).ips?.[0]?.address);
  started = process.hrtime.bigint();
  const dels = await Promise.all(pods.map((pod) => asyncDriver(set, driver, "del", pod)));
  const delWall = Number(process.hrtime.bigint() - started) / 1e6;
  for (const pod of pods) delNetns(pod);
  return {
    pods: PARALLEL,
    addWallMs: round(addWall),
    addFailures: adds.filter((r) => !r.ok).length,
    distinctAddresses: new Set(addresses).size,
    delWallMs: round(delWall),
    delFailures: dels.filter((r) => !r.ok).length,
  };
}

/** Peak resident memory of each plugin process of one ADD, through GNU time wrappers. */
function peakMemory(set, driver, types) {
  const wrapped = join(set.dir, "wrapped-bin");
  mkdirSync(wrapped, { recursive: true });
  const log = join(set.dir, "maxrss");
  for (const type of types) {
    const real = join(set.binDir, type);
    // A hard link under its own name: the multi-call executable picks its plugin by name, and
    // in-process delegation recognises its own file.
    mkdirSync(join(wrapped, "real"), { recursive: true });
    const link = join(wrapped, "real", type);
    try {
      linkSync(real, link);
    } catch {
      copyFileSync(real, link); // another file system (the reference's /usr/lib/cni)
    }
    writeFileSync(join(wrapped, type), `#!/bin/sh\nexec /usr/bin/time -a -o ${log} -f "${type} %M" ${link}\n`, { mode: 0o755 });
  }
  const pod = `${tag}-${set.name}-mem`;
  addNetns(pod);
  const env = { ...driverEnv(set), CNI_PATH: `${wrapped}:${set.binDir}` };
  spawnSync(driver, ["add", "cbr0", pod, `/var/run/netns/${pod}`, "eth0"], { env });
  spawnSync(driver, ["del", "cbr0", pod, `/var/run/netns/${pod}`, "eth0"], { env });
  delNetns(pod);
  const peaks = {};
  for (const line of readFileSync(log, "utf8").trim().split("\n")) {
    const [type, kib] = line.split(" ");
    peaks[type] = Math.max(peaks[type] ?? 0, Math.round(Number(kib) / 1024));
  }
  return peaks;
}

function floor() {
  const samples = [];
  for (let i = 0; i < ROUNDS + 2; i++) {
    const started = process.hrtime.bigint();
    spawnSync("node", ["-e", "0"], { env: { PATH: PATH_ENV } });
    if (i >= 2) samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return samples;
}

/** An executable answering VERSION, from spawn to exit: its start-up. */
function versionTimes(executable) {
  const samples = [];
  for (let i = 0; i < ROUNDS + 2; i++) {
    const started = process.hrtime.bigint();
    const out = spawnSync(executable, [], { env: { PATH: PATH_ENV, CNI_COMMAND: "VERSION" }, input: "{}" });
    if (out.status !== 0) throw new Error(`${executable} VERSION failed: ${out.stdout}${out.stderr}`);
    if (i >= 2) samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return samples;
}

/**
 * weft's own share: the four plugin processes of one pod's ADD and DEL, each executed directly as
 * libcni executes it (same environment, stdin and prevResult), timed from spawn to exit without the
 * driver around them.
 */
function direct(set) {
  const conflist = JSON.parse(readFileSync(join(set.dir, "conf/10-bench.conflist"), "utf8"));
  const [flannelConf, portmapConf] = conflist.plugins.map((p) => ({ cniVersion: conflist.cniVersion, name: conflist.name, ...p }));
  const times = { "flannel ADD": [], "portmap ADD": [], "portmap DEL": [], "flannel DEL": [] };
  for (let i = 0; i < ROUNDS + 2; i++) {
    const pod = `${tag}-${set.name}-d${i}`;
    addNetns(pod);
    const env = (verb) => ({
      PATH: PATH_ENV,
      CNI_COMMAND: verb,
      CNI_CONTAINERID: pod,
      CNI_NETNS: `/var/run/netns/${pod}`,
      CNI_IFNAME: "eth0",
      CNI_PATH: set.binDir,
    });
    const run = (type, verb, conf) => {
      const started = process.hrtime.bigint();
      const out = spawnSync(join(set.binDir, type), [], { env: env(verb), input: JSON.stringify(conf), encoding: "utf8" });
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (out.status !== 0) throw new Error(`${type} ${verb} ${pod} failed: ${out.stdout}${out.stderr}`);
      if (i >= 2) times[`${type} ${verb}`].push(ms);
      return out.stdout;
    };
    const prevResult = JSON.parse(run("flannel", "ADD", flannelConf));
    const chained = { ...portmapConf, prevResult };
    run("portmap", "ADD", chained);
    run("portmap", "DEL", chained);
    run("flannel", "DEL", flannelConf);
    delNetns(pod);
  }
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, stats(v)]));
}

/**
 * The kernel's share of a DEL: deleting a veth pair, timed as `ip link del` less `ip link show` of
 * the same namespace (ip's own start and namespace switch). The request returns only once both
 * devices are unregistered, which waits out RCU grace periods.
 */
function vethDelete() {
  const samples = [];
  for (let i = 0; i < ROUNDS + 2; i++) {
    const pod = `${tag}-veth-${i}`;
    addNetns(pod);
    sh("ip", ["link", "add", `${tag}v`, "type", "veth", "peer", "name", "eth0", "netns", pod]);
    sh("ip", ["link", "set", `${tag}v`, "up"]);
    sh("ip", ["-n", pod, "link", "set", "eth0", "up"]);
    const timed = (args) => {
      const started = process.hrtime.bigint();
      sh("ip", args);
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    const baseline = timed(["-n", pod, "link", "show", "eth0"]);
    const deleting = timed(["-n", pod, "link", "del", "eth0"]);
    delNetns(pod);
    if (i >= 2) samples.push(deleting - baseline);
  }
  return stats(samples);
}

/** Inside the node namespace: the measurements of one plugin set, written as JSON. */
async function inner(setFile) {
  const { set, driver } = JSON.parse(readFileSync(setFile, "utf8"));
  const times = sequential(set, driver);
  const result = { ADD: stats(times.ADD), CHECK: { ...stats(times.CHECK), failures: times.checkFailures }, DEL: stats(times.DEL) };
  if (set.first) {
    result.direct = direct(set);
    result.vethDeleteMs = vethDelete();
  }
  if (set.kind === "form" || set.name === "ref") {
    result.parallel = await parallel(set, driver);
    result.peakMemoryMiB = peakMemory(set, driver, set.kind === "form" ? ["flannel", "portmap"] : ["bridge", "host-local", "portmap"]);
  }
  writeFileSync(`${setFile}.result`, JSON.stringify(result));
}

/** A form's plugins in a directory of the bench's own: the standalone one file under every name (hard links), as scripts/install leaves it. */
function copyForm(label, from) {
  const dir = join(work, `bin-${label}`);
  mkdirSync(dir);
  const standalone = !readWeftBanner(join(from, "flannel"));
  for (const type of PLUGIN_TYPES) {
    if (standalone && type !== PLUGIN_TYPES[0]) linkSync(join(dir, PLUGIN_TYPES[0]), join(dir, type));
    else copyFileSync(join(from, type), join(dir, type));
  }
  spawnSync("chmod", ["755", ...PLUGIN_TYPES.map((t) => join(dir, t))]);
  return { label, dir, standalone, bytes: statSync(join(dir, "flannel")).size };
}

async function main() {
  work = mkdtempSync(join(tmpdir(), "weft-bench-"));
  const driver = buildDriver();
  const copies = forms().map(([label, from]) => copyForm(label, from));
  const first = copies[0].dir;

  const sets = [...copies.map((c) => prepare(`form-${c.label}`, c.dir, weftConflist, undefined, "form")), prepare("ref", REF_BIN, referenceConflist)];
  sets[0].first = true;
  if (!process.argv.includes("--no-parts")) {
    // Only the script form carries the banner that in-process delegation is decided by.
    if (readWeftBanner(join(first, "flannel"))) sets.push(prepare("weft-exec", executingBinDir(first), weftConflist));
    sets.push(
      prepare("weft-mapped", first, weftConflist, PORT_MAPPING),
      prepare("ref-mapped", REF_BIN, referenceConflist, PORT_MAPPING),
      prepare("weft-bridge", first, bridgeConflist),
      prepare("ref-bridge", REF_BIN, bridgeConflist),
      prepare("weft-host-local", first, hostLocalConflist),
      prepare("ref-host-local", REF_BIN, hostLocalConflist),
    );
  }
  const results = {
    machine: machine(),
    rounds: ROUNDS,
    floor: stats(floor()),
    forms: copies.map((c) => ({
      label: c.label,
      standalone: c.standalone,
      executableBytes: c.bytes,
      version: stats(versionTimes(join(c.dir, "loopback"))),
    })),
    refVersion: stats(versionTimes(join(REF_BIN, "loopback"))),
    sets: {},
  };
  for (const set of sets) {
    const setFile = join(work, `${set.name}.json`);
    writeFileSync(setFile, JSON.stringify({ set, driver }));
    // The pods this run makes inside: known names, so the cleanup here removes them whatever happens.
    for (let i = 0; i < ROUNDS + 2; i++) namespaces.add(`${tag}-${set.name}-s${i}`).add(`${tag}-${set.name}-d${i}`).add(`${tag}-veth-${i}`);
    for (let i = 0; i < PARALLEL; i++) namespaces.add(`${tag}-${set.name}-p${i}`);
    namespaces.add(`${tag}-${set.name}-mem`);
    const run = spawnSync(
      "ip",
      [
        "netns",
        "exec",
        set.node,
        process.execPath,
        fileURLToPath(import.meta.url),
        "--inner",
        setFile,
        "--tag",
        tag,
        "--rounds",
        String(ROUNDS),
        "--parallel",
        String(PARALLEL),
      ],
      {
        stdio: "inherit",
      },
    );
    if (run.status !== 0) throw new Error(`bench of ${set.name} failed`);
    results.sets[set.name] = JSON.parse(readFileSync(`${setFile}.result`, "utf8"));
  }
  report(results);
  mkdirSync(dirname(JSON_OUT), { recursive: true });
  writeFileSync(JSON_OUT, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nwritten to ${JSON_OUT}`);
}

function machine() {
  const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
  const cores = readFileSync("/proc/cpuinfo", "utf8").match(/^processor/gm)?.length ?? 0;
  return { cpu, cores, node: process.version, kernel: sh("uname", ["-r"]).trim() };
}

function report(r) {
  const forms = r.forms.map((f) => ({ ...f, set: r.sets[`form-${f.label}`] }));
  const weft = forms[0].set;
  const ref = r.sets.ref;
  const processes = 2; // flannel (bridge and host-local in-process) and portmap
  const columns = [...forms.map((f) => `weft ${f.label}`), "Go reference"];
  const width = 16;
  const line = (label, cells) => console.log(`| ${label.padEnd(30)} | ${cells.map((c) => String(c).padStart(width)).join(" | ")} |`);
  const ratio = (w, g) => `${(w / g).toFixed(2)}x`;
  console.log(`machine: ${r.machine.cpu}, ${r.machine.cores} cores, Node.js ${r.machine.node}, kernel ${r.machine.kernel}`);
  console.log(`rounds: ${r.rounds}; times in ms, median / p95, each a whole libcni driver process run inside the node namespace\n`);
  line("", columns);
  console.log(`|${"-".repeat(32)}|${columns.map(() => "-".repeat(width + 2)).join("|")}|`);
  const refCell = (s) => `${s.failures ? "(failed) " : ""}${s.median} / ${s.p95}`;
  line("VERSION (start-up, loopback)", [...forms.map((f) => `${f.version.median} / ${f.version.p95}`), refCell(r.refVersion)]);
  for (const verb of ["ADD", "CHECK", "DEL"]) line(verb, [...forms.map((f) => refCell(f.set[verb])), refCell(ref[verb])]);
  const addDel = (s) => round(s.ADD.median + s.DEL.median);
  line("ADD + DEL (medians)", [...forms.map((f) => `${addDel(f.set)} = ${ratio(addDel(f.set), addDel(ref))}`), addDel(ref)]);
  const pods = weft.parallel.pods;
  line(`${pods} pods ADD at once (wall)`, [
    ...forms.map((f) => `${f.set.parallel.addWallMs} = ${ratio(f.set.parallel.addWallMs, ref.parallel.addWallMs)}`),
    ref.parallel.addWallMs,
  ]);
  line("  failures / distinct IPs", [
    ...forms.map((f) => `${f.set.parallel.addFailures} / ${f.set.parallel.distinctAddresses}`),
    `${ref.parallel.addFailures} / ${ref.parallel.distinctAddresses}`,
  ]);
  line(`${pods} pods DEL at once (wall)`, [...forms.map((f) => f.set.parallel.delWallMs), ref.parallel.delWallMs]);
  line("  failures", [...forms.map((f) => f.set.parallel.delFailures), ref.parallel.delFailures]);
  const rss = (m) =>
    Object.entries(m)
      .map(([k, v]) => `${k.replace("host-local", "h-l")} ${v}`)
      .join(", ");
  line("peak RSS per process (MiB)", [...forms.map((f) => rss(f.set.peakMemoryMiB)), rss(ref.peakMemoryMiB)]);
  line("executable (MB)", [...forms.map((f) => `${(f.executableBytes / 1e6).toFixed(1)}${f.standalone ? " (all)" : " + node"}`), "-"]);
  const floorMs = r.floor.median;
  console.log(
    `\nnode -e 0 (floor): ${floorMs} ms median; weft starts ${processes} processes per verb, so Node's floor for ADD + DEL is ${round(4 * floorMs)} ms`,
  );
  const addDel0 = weft.ADD.median + weft.DEL.median;
  if (weft.direct) {
    console.log(`\nthe ${forms[0].label} form in detail:`);
    const d = weft.direct;
    const own = Object.values(d).reduce((sum, s) => sum + s.median, 0);
    const kernel = weft.vethDeleteMs.median;
    console.log(
      `weft's processes executed directly, no driver (median / p95 ms): ${Object.entries(d)
        .map(([k, s]) => `${k} ${s.median} / ${s.p95}`)
        .join(", ")}`,
    );
    // The form's own floor is its VERSION: the runtime's start-up and weft's least work.
    const start = forms[0].version.median;
    console.log(
      `  sum ${round(own)} ms = ${(own / (4 * start)).toFixed(2)}x 4 of its VERSION (${start} ms each); the driver and libcni add ${round(addDel0 - own)} ms to ADD + DEL`,
    );
    console.log(
      `  the kernel deleting a veth pair (inside RTM_DELLINK): ${kernel} ms; 4 VERSIONs + that = ${round(4 * start + kernel)} ms, weft's processes = ${(own / (4 * start + kernel)).toFixed(2)}x it`,
    );
  }
  const parts = [
    ["flannel chain, delegates executed", "weft-exec", undefined],
    ["default conflist, 1 port mapping", "weft-mapped", "ref-mapped"],
    ["bridge + host-local", "weft-bridge", "ref-bridge"],
    ["host-local alone", "weft-host-local", "ref-host-local"],
  ].filter(([, w]) => r.sets[w]);
  if (parts.length === 0) return;
  console.log(`\nper plugin, median / p95 ms (weft | Go reference)\n`);
  console.log(`| ${"".padEnd(40)} | ${"ADD".padStart(13)} | ${"CHECK".padStart(13)} | ${"DEL".padStart(13)} |`);
  console.log(`|${"-".repeat(42)}|${"-".repeat(15)}|${"-".repeat(15)}|${"-".repeat(15)}|`);
  const cell = (s, v) => `${s[v].failures ? "(failed) " : ""}${s[v].median} / ${s[v].p95}`;
  const row = (label, s) => console.log(`| ${label.padEnd(40)} | ${["ADD", "CHECK", "DEL"].map((v) => cell(s, v).padStart(13)).join(" | ")} |`);
  for (const [label, w, g] of parts) {
    row(`${label}: weft`, r.sets[w]);
    if (g) row(`${label}: Go`, r.sets[g]);
  }
  const failing = Object.entries(r.sets).filter(([, s]) => s.CHECK.failures);
  for (const [name, s] of failing)
    console.log(
      `(failed): CHECK of ${name} failed ${s.CHECK.failures} of ${s.CHECK.n} times on healthy pods (a Go plugin defect, conformance/DIFFERENCES.md)`,
    );
}

const innerSet = arg("inner", undefined);
if (innerSet) {
  // The outer process owns the work dir and the namespaces.
  process.removeAllListeners("exit");
  await inner(innerSet);
} else {
  await main();
}
