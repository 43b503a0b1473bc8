#!/usr/bin/env node
// Throughput between pods on two nodes per backend (test/scale/udp-throughput.ts: udp, vxlan and
// host-gw in one run, iperf3 from Debian), bundled by esbuild into build/ and run with this Node.js,
// its arguments passed on. A benchmark, never run by the tests. Needs root, iperf3 and bin/flanneld.
//
//   node scripts/bench-udp.mjs [--seconds 10] [--backends udp,vxlan,host-gw] [--streams 1] [--json FILE]
import { runBundled } from "./run-bundled.mjs";

// ESM, two directories below the root as test/scale is: the lab's helpers find bin/ from import.meta.url.
await runBundled("test/scale/udp-throughput.ts", { outDir: "build/bench-udp", format: "esm" });
