import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vitest/config";
// @ts-expect-error: plain JavaScript module shared with the esbuild build
import { addonPaths, embeddedAddonSource } from "./scripts/native-addons.mjs";

const root = fileURLToPath(new URL(".", import.meta.url));

/** The same `weft-native:<name>` modules the bundle gets, so tests load addons the way the executables do. */
function weftNative(): Plugin {
  const paths = addonPaths(root) as Record<string, string>;
  return {
    name: "weft-native",
    resolveId: (id) => (id.startsWith("weft-native:") ? `\0${id}` : undefined),
    load(id) {
      if (!id.startsWith("\0weft-native:")) return undefined;
      const name = id.slice("\0weft-native:".length);
      const path = paths[name];
      if (!path) throw new Error(`unknown native addon ${name}`);
      return embeddedAddonSource(name, path);
    },
  };
}

export default defineConfig({
  plugins: [weftNative()],
  test: {
    include: ["lib/**/*.test.ts", "plugins/**/*.test.ts", "ipam/**/*.test.ts", "agent/**/*.test.ts", "test/**/*.test.ts", "scripts/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
