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
