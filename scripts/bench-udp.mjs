#!/usr/bin/env node
// Throughput between pods on two nodes per backend (test/scale/udp-throughput.ts: udp, vxlan and
// host-gw in one run, iperf3 from Debian), bundled by esbuild into build/ and run with this Node.js,
// its arguments passed on. A benchmark, never run by the tests. Needs root, iperf3 and bin/flanneld.
//
//   node scripts/bench-udp.mjs [--seconds 10] [--backends udp,vxlan,host-gw] [--streams 1] [--json FILE]
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
// ESM, two directories below the root as test/scale is: the lab's helpers find bin/ from import.meta.url.
const outfile = join(root, `build/bench-udp/udp-throughput-${process.pid}.mjs`);
await esbuild.build({
  entryPoints: [join(root, "test/scale/udp-throughput.ts")],
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  outfile,
  banner: { js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);' },
  logLevel: "error",
});
const child = spawn(process.execPath, [outfile, ...process.argv.slice(2)], { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => {
  rmSync(outfile, { force: true });
  process.exit(code ?? (signal ? 130 : 1));
});
