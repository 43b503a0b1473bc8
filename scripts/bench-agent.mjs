#!/usr/bin/env node
// The node agent's scale benchmark (test/scale/agent-scale.ts), bundled by esbuild into build/ and run
// with this Node.js, its arguments passed on. Never run by the tests' suite as a benchmark: `make bench`
// (the smoke test runs it with tiny sizes). Needs root and bin/flanneld (`make build`).
//
//   node scripts/bench-agent.mjs [--sizes 1000,5000] [--churn-rate 100] [--churn-seconds 60]
//     [--idle-seconds 15] [--concurrency 32] [--json build/bench-agent.json] [--flanneld bin/flanneld]
//     [--cpu-prof DIR] [--route-resync S] [--logs DIR] [--changes CSV] [--no-join]
//     [--timeout-seconds 300]
import { runBundled } from "./run-bundled.mjs";

await runBundled("test/scale/agent-scale.ts", { outDir: "build/bench-agent", format: "cjs" });
