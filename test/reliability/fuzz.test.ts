import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as esbuild from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error: plain JavaScript module shared with the build
import { esbuildNativeAddons } from "../../scripts/native-addons.mjs";
import { FUZZ_PLUGINS, generateCases, safePaths, type FuzzCase, type FuzzPlugin } from "./cases.js";
import type { CaseOutcome } from "./driver.js";
import { hex, Random, seedFromEnv } from "./random.js";
import { createNode, PATH, ROOT, weftBuildVersion, type Node } from "./sandbox.js";
import { record } from "./figures.js";

/**
 * Bad input: each plugin gets WEFT_FUZZ_CASES (default 160) seeded cases in process
 * through skel.dispatch, and every eighth of them again through its executable. Reproduce a
 * failure with WEFT_FUZZ_SEED=<seed printed below>; WEFT_FUZZ_SEED=random explores new cases.
 */

const SEED = seedFromEnv();
const CASES = Number(process.env.WEFT_FUZZ_CASES ?? 160);
const EXEC_EVERY = 8;
/** WEFT_FUZZ_ONLY=3,17: run only these cases (to reproduce one). */
const ONLY = process.env.WEFT_FUZZ_ONLY?.split(",").map(Number);
const CASE_TIMEOUT_MS = 20_000;

let node: Node;
let driver: string;
let fixtures: string[];

beforeAll(async () => {
  node = createNode("fuzz");
  node.addPod();
  const p = safePaths(node.work);
  mkdirSync(p.data);
  writeFileSync(p.plainFile, "not a directory\n");
  writeFileSync(p.resolvConf, "nameserver 10.96.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n");
  symlinkSync(p.data, p.linkToDir);
  symlinkSync(join(node.work, "nowhere"), p.dangling);
  driver = join(node.work, "driver.cjs");
  await esbuild.build({
    entryPoints: [join(ROOT, "test/reliability/driver.ts")],
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    define: { WEFT_VERSION: JSON.stringify(weftBuildVersion()) },
    outfile: driver,
    plugins: [esbuildNativeAddons(ROOT)],
    logLevel: "error",
  });
  fixtures = [
    node.cniPath,
    node.cacheDir,
    driver,
    p.plainFile,
    p.resolvConf,
    p.linkToDir,
    p.dangling,
    join(node.work, "subnet.env"),
    join(node.work, "cases"),
  ];
  mkdirSync(join(node.work, "cases"));
  console.log(`fuzz seed ${hex(SEED)} (WEFT_FUZZ_SEED=${hex(SEED)} reproduces), ${CASES} cases per plugin`);
}, 60_000);

afterAll(() => node?.remove());

function runDriver(plugin: FuzzPlugin, cases: FuzzCase[], execDir?: string): CaseOutcome[] {
  const tag = `${plugin}${execDir ? "-exec" : ""}`;
  const input = join(node.work, "cases", `${tag}.json`);
  const output = join(node.work, "cases", `${tag}.out.json`);
  writeFileSync(input, JSON.stringify({ work: node.work, pod: node.pods[0], fixtures, cases, caseTimeoutMs: CASE_TIMEOUT_MS, execDir }));
  // The driver (this Node.js) executes the sample with the PATH it was given: the sandbox's.
  const env = [`WEFT_CACHE_DIR=${node.cacheDir}`, `PATH=${PATH}`];
  const p = spawnSync("ip", ["netns", "exec", node.name, "env", ...env, process.execPath, driver, input, output], {
    encoding: "utf8",
  });
  const outcomes = readFileSync(output, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as CaseOutcome);
  if (outcomes.length < cases.length) {
    // The driver died: the case it was running is the culprit.
    const c = cases[outcomes.length]!;
    outcomes.push({
      index: c.index,
      verb: c.env.CNI_COMMAND ?? "",
      code: -1,
      stdout: "",
      stderr: p.stderr.slice(-2000),
      leaks: [],
      crash: `the process died (status ${p.status}, signal ${p.signal}): ${p.stderr.slice(-1500)}`,
      ms: 0,
    });
  }
  return outcomes;
}

// Messages of JavaScript's own exceptions: a plugin that lets one out has a bug, whatever code it wears.
const ENGINE_ERROR =
  /Cannot read propert|Cannot set propert|is not a function|is not iterable|is not defined|Maximum call stack|Invalid array length|Cannot convert|Cannot mix BigInt|Invalid time value|\[object Object\]|(?<![\w/.-])(?:undefined|null) is not|Unexpected token .* in JSON at position \d+$/;

interface Verdict {
  problems: string[];
  leaks: number;
  crashes: number;
}

/**
 * Every case ends in success or a CNI error with a numeric code other than 999 and a message, exit 1,
 * no stack, nothing left.
 */
function judge(c: FuzzCase, o: CaseOutcome): Verdict {
  const problems: string[] = [];
  let crashes = 0;
  const where = `case ${c.index} (${o.verb}; ${c.changes.join("; ") || "unchanged"})`;
  if (o.crash) {
    crashes++;
    problems.push(`${where}: ${o.crash.slice(0, 500)}`);
  }
  if (o.code !== 0 && o.code !== 1) problems.push(`${where}: exit ${o.code}`);
  if (/\n\s+at .+:\d+:\d+/.test(o.stdout)) problems.push(`${where}: stack trace on stdout`);
  if (o.code === 1) {
    let err: { code?: unknown; msg?: unknown } | undefined;
    try {
      err = JSON.parse(o.stdout) as { code?: unknown; msg?: unknown };
    } catch {
      problems.push(`${where}: exit 1 without error JSON: ${JSON.stringify(o.stdout.slice(0, 200))}`);
    }
    if (err) {
      if (typeof err.code !== "number") problems.push(`${where}: error code ${JSON.stringify(err.code)} is not a number`);
      // 999 means a failure the plugin did not foresee: every hostile input here is foreseeable.
      else if (err.code === 999) problems.push(`${where}: code 999 (unexpected internal error): ${String(err.msg).slice(0, 300)}`);
      if (typeof err.msg !== "string" || err.msg.length < 8) problems.push(`${where}: error message ${JSON.stringify(err.msg)} says nothing`);
      else if (ENGINE_ERROR.test(err.msg) || /internal error: /.test(o.stderr)) {
        crashes++;
        problems.push(`${where}: an exception escaped as code ${String(err.code)}: ${err.msg.slice(0, 300)} ${o.stderr.slice(0, 600)}`);
      }
    }
  }
  if (o.code === 0 && o.verb === "ADD") {
    try {
      const result = JSON.parse(o.stdout) as { cniVersion?: unknown };
      if (typeof result.cniVersion !== "string") problems.push(`${where}: ADD result without cniVersion`);
    } catch {
      problems.push(`${where}: ADD succeeded without a JSON result`);
    }
    if (o.del && o.del.code !== 0) problems.push(`${where}: DEL after a successful ADD failed: ${o.del.stdout.slice(0, 300)}`);
  }
  if (o.code === 0 && ["DEL", "CHECK", "GC", "STATUS"].includes(o.verb) && o.stdout !== "")
    problems.push(`${where}: ${o.verb} succeeded with output`);
  if (o.leaks.length) problems.push(`${where}: left behind ${o.leaks.join(", ")}`);
  return { problems, leaks: o.leaks.length ? 1 : 0, crashes };
}

describe.each(FUZZ_PLUGINS)("fuzz %s", (plugin) => {
  it(`${CASES} hostile inputs in process, and a sample through WEFT_BIN's ${plugin}: each a result or a CNI error, nothing left behind`, () => {
    const cases = generateCases(plugin, new Random(SEED).fork(plugin), CASES, {
      work: node.work,
      podNetns: `/run/netns/${node.pods[0]}`,
      nodeNetns: `/run/netns/${node.name}`,
      cniPath: node.cniPath,
    }).filter((c) => !ONLY || ONLY.includes(c.index));
    const outcomes = runDriver(plugin, cases);
    const sample = cases.filter((c) => c.index % EXEC_EVERY === 0);
    const executed = runDriver(plugin, sample, node.cniPath);

    const problems: string[] = [];
    let leaks = 0;
    let crashes = 0;
    const tally = (c: FuzzCase, o: CaseOutcome | undefined, how: string) => {
      if (!o) {
        problems.push(`${how} case ${c.index}: never ran (the driver stopped early)`);
        return;
      }
      const v = judge(c, o);
      problems.push(...v.problems.map((p) => `${how} ${p}`));
      leaks += v.leaks;
      crashes += v.crashes;
    };
    cases.forEach((c, i) => tally(c, outcomes[i], "in-process"));
    sample.forEach((c, i) => tally(c, executed[i], "exec"));
    // The executable and the dispatcher must agree on the outcome of the same case.
    sample.forEach((c, i) => {
      const a = outcomes[cases.indexOf(c)];
      const b = executed[i];
      // A process environment cannot carry a NUL: the executable sees the value cut there.
      if (!a || !b || Object.values(c.env).some((v) => v.includes("\u0000"))) return;
      const errCode = (o: CaseOutcome) => (o.code === 1 ? (JSON.parse(o.stdout) as { code: number }).code : 0);
      try {
        if (a.code !== b.code || errCode(a) !== errCode(b)) {
          problems.push(
            `case ${c.index}: in-process exit ${a.code} ${a.stdout.slice(0, 200)} but executable exit ${b.code} ${b.stdout.slice(0, 200)}`,
          );
        }
      } catch {
        // judged above
      }
    });

    const succeeded = outcomes.filter((o) => o.code === 0).length;
    const codes = new Map<number, number>();
    for (const o of [...outcomes, ...executed]) {
      if (o.code !== 1) continue;
      try {
        const code = (JSON.parse(o.stdout) as { code: number }).code;
        codes.set(code, (codes.get(code) ?? 0) + 1);
      } catch {
        // judged above
      }
    }
    const summary = `${plugin}: seed ${hex(SEED)}, ${cases.length} in process + ${sample.length} executed; ${succeeded} succeeded, error codes ${JSON.stringify(Object.fromEntries(codes))}; leaks ${leaks}, crashes ${crashes}`;
    console.log(summary);
    if (process.env.WEFT_FUZZ_VERBOSE) {
      for (const [i, o] of outcomes.entries())
        console.log(`  ${plugin} case ${cases[i]!.index} ${o.verb} -> ${o.code} ${o.stdout.replace(/\s+/g, " ").slice(0, 260)}`);
    }
    record("fuzz", { plugin, seed: hex(SEED), inProcess: cases.length, executed: sample.length, succeeded, leaks, crashes });
    expect(problems, summary).toEqual([]);
  }, 240_000);
});
