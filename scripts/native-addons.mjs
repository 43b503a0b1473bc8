// The native addons weft carries inside its single-file executables, and the module source that
// embeds one of them (used by the esbuild build and by the vitest config alike).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as esbuild from "esbuild";

/**
 * scripts/loader.ts bundled with the cache it trusts (lib/native/cache.ts) into the first lines of an
 * executable: a function expression run as the file's CommonJS main script. bundleBytes: the bundle
 * the loader unpacks (its sha256 is checked in full); type: the program's name, or "weft" for the
 * single executable (standalone), which serves every program.
 */
export function loaderSource(root, { bundleBytes, type, standalone }) {
  const built = esbuild.buildSync({
    entryPoints: [join(root, "scripts/loader.ts")],
    bundle: true,
    platform: "node",
    target: "node20",
    format: "iife",
    minifySyntax: true,
    legalComments: "none",
    define: {
      STANDALONE: String(standalone),
      BUNDLE_SHA256: JSON.stringify(createHash("sha256").update(bundleBytes).digest("hex")),
      PLUGIN_TYPE: JSON.stringify(type),
    },
    write: false,
    logLevel: "error",
  });
  return built.outputFiles[0].text;
}

export function addonPaths(root) {
  return {
    weft: join(root, "build/native/weft.node"),
  };
}

/** `export const name, sha256; export function bytes()`: decoded only when the cache misses. */
export function embeddedAddonSource(name, path) {
  const data = readFileSync(path);
  const sha256 = createHash("sha256").update(data).digest("hex");
  return [
    `export const name = ${JSON.stringify(name)};`,
    `export const sha256 = ${JSON.stringify(sha256)};`,
    `const base64 = ${JSON.stringify(data.toString("base64"))};`,
    `export function bytes() { return Buffer.from(base64, "base64"); }`,
  ].join("\n");
}

/**
 * The module for an addon the executable carries as a part of its own file (see scripts/loader.ts):
 * the bytes are read from there only when the addon cache misses.
 */
export function partAddonSource(name, path) {
  const sha256 = createHash("sha256").update(readFileSync(path)).digest("hex");
  return [
    `export const name = ${JSON.stringify(name)};`,
    `export const sha256 = ${JSON.stringify(sha256)};`,
    // __weftPart is the loader's: it reads a part of the executable file.
    `export function bytes() { return __weftPart(${JSON.stringify(`addon:${name}`)}); }`,
  ].join("\n");
}

/**
 * esbuild plugin: `weft-native:<name>` becomes a module embedding that addon (or, with
 * { parts: true }, one reading it from the executable's parts).
 */
export function esbuildNativeAddons(root, { parts = false } = {}) {
  const paths = addonPaths(root);
  return {
    name: "weft-native",
    setup(build) {
      build.onResolve({ filter: /^weft-native:/ }, (args) => ({ path: args.path.slice("weft-native:".length), namespace: "weft-native" }));
      build.onLoad({ filter: /.*/, namespace: "weft-native" }, (args) => {
        const path = paths[args.path];
        if (!path) throw new Error(`unknown native addon ${args.path}`);
        return { contents: parts ? partAddonSource(args.path, path) : embeddedAddonSource(args.path, path), loader: "js" };
      });
    },
  };
}
