import { defineConfig } from "vitest/config";
import base from "./vitest.config.js";

// `make mutation`: the main config's plugins, but only the unit tests of the pure modules Stryker
// mutates (stryker.config.json); nothing that needs namespaces or the kernel. (mergeConfig would
// append to the main include list rather than replace it.)
export default defineConfig({
  plugins: base.plugins,
  test: {
    include: [
      "ipam/host-local/allocator.test.ts",
      "ipam/host-local/config.test.ts",
      "lib/cni/config.test.ts",
      "lib/cni/result.test.ts",
      "lib/cni/result-libcni.test.ts",
      "lib/cni/skel.test.ts",
      "plugins/portmap/config.test.ts",
      "plugins/portmap/rules.test.ts",
      "plugins/flannel/delegate-config.test.ts",
      "plugins/flannel/subnet-env.test.ts",
      "agent/flags.test.ts",
      "agent/lease.test.ts",
      "agent/network-config.test.ts",
      "agent/subnet-env.test.ts",
    ],
    testTimeout: 30_000,
  },
});
