// The native addons weft carries inside its single-file executables, and the module source that
// embeds one of them (used by the esbuild build and by the vitest config alike).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export function addonPaths(root) {
  return {
    weft: join(root, "build/native/weft.node"),
    netlink: join(root, `node_modules/netlink/prebuilds/linux-${process.arch}/node.napi.node`),
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

/** esbuild plugin: `weft-native:<name>` becomes a module embedding that addon, and netlink's loader ours. */
export function esbuildNativeAddons(root) {
  const paths = addonPaths(root);
  return {
    name: "weft-native",
    setup(build) {
      build.onResolve({ filter: /^weft-native:/ }, (args) => ({ path: args.path.slice("weft-native:".length), namespace: "weft-native" }));
      build.onLoad({ filter: /.*/, namespace: "weft-native" }, (args) => {
        const path = paths[args.path];
        if (!path) throw new Error(`unknown native addon ${args.path}`);
        return { contents: embeddedAddonSource(args.path, path), loader: "js" };
      });
      // netlink loads its binding with require("node-gyp-build")(dir): hand it the embedded one.
      build.onResolve({ filter: /^node-gyp-build$/ }, () => ({ path: join(root, "plugins/kernel/netlink-binding.cjs") }));
    },
  };
}
