#!/usr/bin/env node
// The node agent's scale benchmark (test/scale/agent-scale.ts), bundled by esbuild into build/ and run
// with this Node.js, its arguments passed on. Never run by the tests' suite as a benchmark: `make bench`
// (the smoke test runs it with tiny sizes). Needs root and bin/flanneld (`make build`).
//
//   node scripts/bench-agent.mjs [--sizes 1000,5000] [--churn-rate 100] [--churn-seconds 60]
//     [--idle-seconds 15] [--concurrency 32] [--json build/bench-agent.json] [--flanneld bin/flanneld]
//     [--cpu-prof DIR] [--route-resync S] [--logs DIR] [--changes CSV] [--no-join]
//     [--timeout-seconds 300]
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
// A file per run: the tests' tiny run may bundle while `make bench` runs.
const outfile = join(root, `build/bench-agent/agent-scale-${process.pid}.cjs`);
await esbuild.build({
  entryPoints: [join(root, "test/scale/agent-scale.ts")],
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  outfile,
  logLevel: "error",
});
const child = spawn(process.execPath, [outfile, ...process.argv.slice(2)], { stdio: "inherit" });
// Passed on (the child's cleanup is idempotent, so a Ctrl-C it got from the terminal too does no harm).
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => {
  rmSync(outfile, { force: true });
  process.exit(code ?? (signal ? 130 : 1));
});
