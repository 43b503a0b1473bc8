import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Bundles the TypeScript file `entry` (relative to the root) with esbuild into `outDir` and runs the
 * bundle with this Node.js, this script's arguments passed on; once it exits, removes the bundle and
 * exits with its code. The bundle's name carries this process's id: two runs may bundle at once.
 * format "esm" gets a `require` for the CommonJS packages bundled in.
 */
export async function runBundled(entry, { outDir, format }) {
  const outfile = join(root, outDir, `${basename(entry, ".ts")}-${process.pid}.${format === "esm" ? "mjs" : "cjs"}`);
  await esbuild.build({
    entryPoints: [join(root, entry)],
    bundle: true,
    platform: "node",
    target: "node20",
    format,
    outfile,
    ...(format === "esm" && { banner: { js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);' } }),
    logLevel: "error",
  });
  const child = spawn(process.execPath, [outfile, ...process.argv.slice(2)], { stdio: "inherit" });
  // Passed on (the child's cleanup is idempotent, so a Ctrl-C it got from the terminal too does no harm).
  for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
  child.on("exit", (code, signal) => {
    rmSync(outfile, { force: true });
    process.exit(code ?? (signal ? 130 : 1));
  });
}
