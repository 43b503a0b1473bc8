// The import layering (make lint): the folders of lib/ form layers and import nothing above them
// (so they form no cycle), no module anywhere is part of a cycle, and programs do not import the
// build or the tests. A test beside its code (x.test.ts) may use test/ and the build's helpers.

/** Each folder of lib/, and the folders of lib/ it may import, from the bottom up. */
const LIB_LAYERS = {
  errors: [],
  ip: [],
  node: [],
  crash: [],
  files: ["errors", "ip", "node", "crash"],
  native: ["errors", "ip", "node", "crash", "files"],
  executable: ["errors", "ip", "node", "crash", "files", "native"],
  netns: ["errors", "ip", "node", "crash", "files", "native"],
  lock: ["errors", "ip", "node", "crash", "files", "native"],
  sysctl: ["errors", "ip", "node", "crash", "files", "native", "netns", "lock"],
  netlink: ["errors", "ip", "node", "crash", "files", "native", "netns", "lock", "sysctl"],
  netfilter: ["errors", "ip", "node", "crash", "files", "native", "netns", "lock", "sysctl", "netlink"],
  cni: ["errors", "ip", "node", "files", "native", "lock"],
  etcd: ["errors", "ip", "node", "crash", "files"],
};

// A folder imports only folders listed before it, so the folders of lib/ can form no cycle.
const order = Object.keys(LIB_LAYERS);
for (const [index, [folder, below]] of Object.entries(LIB_LAYERS).entries()) {
  const later = below.filter((f) => !order.slice(0, index).includes(f));
  if (later.length) throw new Error(`LIB_LAYERS: lib/${folder} may import only folders listed before it, not ${later.join(", ")}`);
}

const TEST = "(\\.test\\.ts$|^test/)";

module.exports = {
  forbidden: [
    {
      name: "lib-imports-program",
      comment: "lib/ is shared by the programs: it never imports a plugin, IPAM, the agent, the build or the tests",
      severity: "error",
      from: { path: "^lib/", pathNot: TEST },
      to: { path: "^(plugins|ipam|agent|scripts|test|conformance)/" },
    },
    {
      name: "lib-unknown-folder",
      comment: "a new folder of lib/ takes its place in LIB_LAYERS (.dependency-cruiser.cjs)",
      severity: "error",
      from: { path: "^lib/", pathNot: `^lib/(${Object.keys(LIB_LAYERS).join("|")})/` },
      to: {},
    },
    ...Object.entries(LIB_LAYERS).map(([folder, below]) => ({
      name: `lib-layer-${folder}`,
      comment: below.length
        ? `lib/${folder} may import only ${below.map((f) => `lib/${f}`).join(", ")}`
        : `lib/${folder} imports no other folder of lib/`,
      severity: "error",
      from: { path: `^lib/${folder}/` },
      to: { path: "^lib/", pathNot: `^lib/(${[folder, ...below].join("|")})/` },
    })),
    {
      name: "module-cycle",
      comment: "no module imports itself through others",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "program-imports-build-or-test",
      comment: "plugins and IPAM plugins never import the build scripts or the tests",
      severity: "error",
      from: { path: "^(plugins|ipam)/", pathNot: TEST },
      to: { path: "^(scripts|test)/" },
    },
    {
      name: "agent-imports-program-build-or-test",
      comment: "the node agent stands on lib/ alone: no plugin, IPAM plugin, build script or test",
      severity: "error",
      from: { path: "^agent/", pathNot: TEST },
      to: { path: "^(plugins|ipam|scripts|test|conformance)/" },
    },
    {
      name: "production-imports-test",
      comment: "only tests import tests and their helpers",
      severity: "error",
      from: { pathNot: TEST },
      to: { path: TEST },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(node_modules|gen|bin|build|dist|coverage|reports|\\.node|\\.bun|\\.stryker-tmp|conformance/\\.work|conformance/reference)/" },
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    // Virtual modules of the esbuild build (the embedded addon, the programs' entry points).
    moduleSystems: ["es6", "cjs"],
  },
};
