#!/usr/bin/env node
// Builds weft's standalone executable: the multi-call bundle (scripts/multicall-main.ts) as one file
// that needs nothing on the node, left as <out>/weft plus every program's name (the CNI plugins and
// flanneld) as hard links to it. Two runtimes:
//   node  a Node.js single executable application: a copy of this node binary with the bundle
//         injected (postject), started through scripts/loader.ts and its code cache (the default)
//   bun   the same bundle compiled by Bun (bun build --compile --bytecode, the Bun of
//         scripts/project-bun): Bun's runtime with the bundle and its bytecode inside
// Needs `node scripts/build.mjs` first (gen/validators.js, build/native/weft.node).
//   node scripts/standalone.mjs [--out DIR] [--runtime node|bun] [--baseline] [--no-code-cache]
//                               [--no-strip] [--script-only]
//     --out DIR        where weft and its names go (default dist/standalone)
//     --runtime R      node (default) or bun
//     --baseline       bun: Bun's build for x64 CPUs without AVX2 (@oven/bun-linux-x64-baseline)
//     --no-code-cache  node: leave V8's code cache of the main script (the loader) out of the blob
//     --no-strip       node: keep the node binary's symbols and debug info (13 MB of Node 20's 99 MB)
//     --script-only    only the multi-call bundle, <out>/weft.cjs: the script form, no SEA
//
// In the Node.js form, native addons ride as SEA assets, not as base64 in the bundle: the bytes stay out of the script
// V8 parses at every start, and are read (zero-copy, from the executable's mapping) only on the
// first run on a node, when lib/native/native.ts writes them to its root-owned cache.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as esbuild from "esbuild";
import { bannerLine } from "../lib/executable/banner.ts";
import { PROGRAM_TYPES, PROGRAMS } from "../plugins/registry.ts";
import { addonPaths, esbuildNativeAddons, loaderSource } from "./native-addons.mjs";
import { writeProgramsFile } from "./programs-file.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const TYPES = PROGRAM_TYPES;
// The fuse postject flips so that node looks for the injected blob (node's src/node_sea.cc).
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/**
 * esbuild plugin: `weft-programs:mains` is the multi-call entry's table of every program's main
 * module, from plugins/registry.ts, each imported lazily so that only the chosen one is evaluated.
 */
function programMains() {
  return {
    name: "weft-program-mains",
    setup(build) {
      build.onResolve({ filter: /^weft-programs:mains$/ }, () => ({ path: "mains", namespace: "weft-programs" }));
      build.onLoad({ filter: /.*/, namespace: "weft-programs" }, () => ({
        contents: `export const MAINS = {\n${PROGRAMS.map((p) => `  ${JSON.stringify(p.type)}: () => import(${JSON.stringify(join(root, p.entry))}),`).join("\n")}\n};\n`,
        loader: "js",
        resolveDir: root,
      }));
    },
  };
}

/** esbuild plugin: `weft-native:<name>` reads the SEA asset `<name>.node`. */
function seaNativeAddons() {
  const paths = addonPaths(root);
  return {
    name: "weft-native-sea",
    setup(build) {
      build.onResolve({ filter: /^weft-native:/ }, (args) => ({ path: args.path.slice("weft-native:".length), namespace: "weft-native" }));
      build.onLoad({ filter: /.*/, namespace: "weft-native" }, (args) => {
        const path = paths[args.path];
        if (!path) throw new Error(`unknown native addon ${args.path}`);
        const sha256 = createHash("sha256").update(readFileSync(path)).digest("hex");
        const contents = [
          `export const name = ${JSON.stringify(args.path)};`,
          `export const sha256 = ${JSON.stringify(sha256)};`,
          `export function bytes() { return new Uint8Array(require("node:sea").getRawAsset(${JSON.stringify(`${args.path}.node`)})); }`,
        ].join("\n");
        return { contents, loader: "js" };
      });
    },
  };
}

/**
 * esbuild leaves `await import("node:x")` as a real dynamic import, which a SEA's main script cannot
 * do on Node 20 ("A dynamic import callback was not specified"): make it a lazily required module.
 */
function lazyBuiltins() {
  return {
    name: "weft-lazy-builtins",
    setup(build) {
      build.onResolve({ filter: /^node:/ }, (args) => (args.kind === "dynamic-import" ? { path: args.path, namespace: "weft-builtin" } : undefined));
      build.onLoad({ filter: /.*/, namespace: "weft-builtin" }, (args) => ({
        contents: `module.exports = require(${JSON.stringify(args.path)});`,
        loader: "js",
      }));
    },
  };
}

/**
 * esbuild plugin for the Bun form: lib/node/hashes.ts becomes lib/node/hashes-bun.ts, on Bun's
 * native hasher. Same functions, same digests (the Bun run of the suite compares them with Go's
 * chain names).
 */
function bunHashes() {
  return {
    name: "weft-bun-hashes",
    setup(build) {
      build.onResolve({ filter: /\/node\/hashes\.js$/ }, (args) => ({
        path: join(args.resolveDir, args.path.replace(/hashes\.js$/, "hashes-bun.ts")),
      }));
    },
  };
}

const VERSION_PLACEHOLDER = "@@WEFT_VERSION@@";

/**
 * The multi-call bundle. Its build id (WEFT_VERSION, banner) is `<version>+<form>.<hash of the
 * bundle>`: never the id of a bin/ file, so in-process delegation (lib/cni/invoke.ts) only ever
 * trusts an executable of this very build.
 */
async function bundle(outfile, version, form) {
  const built = await esbuild.build({
    entryPoints: [join(root, "scripts/multicall-main.ts")],
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    minifySyntax: true,
    legalComments: "none",
    define: { WEFT_VERSION: JSON.stringify(VERSION_PLACEHOLDER) },
    write: false,
    outfile: "weft.cjs",
    plugins: [
      lazyBuiltins(),
      programMains(),
      form === "sea" ? seaNativeAddons() : esbuildNativeAddons(root),
      ...(form === "bun" ? [bunHashes()] : []),
    ],
    logLevel: "error",
  });
  const code = built.outputFiles[0].text;
  const id = `${version}+${form}.${createHash("sha256").update(code).digest("hex").slice(0, 12)}`;
  // A SEA main script is compiled as a function body: no #! line there.
  const banner = form === "script" ? `#!/usr/bin/env node\n${bannerLine(id, "weft")}\n` : `${bannerLine(id, "weft")}\n`;
  writeFileSync(outfile, banner + code.replaceAll(VERSION_PLACEHOLDER, id));
  return id;
}

/**
 * The single executable's main script: scripts/loader.ts, which reads the bundle from the
 * executable's assets and keeps a V8 code cache per name and verb as the script form does. The SEA's
 * own code cache (useCodeCache) is V8 compiling the main script without running it, so it leaves out
 * every function compiled lazily: a flannel ADD started 5 ms slower with it than the script form.
 */
function seaMain(bundleBytes, id) {
  const loader = loaderSource(root, { bundleBytes, type: "weft", standalone: true });
  return `${bannerLine(id, "weft")}\n${loader}`;
}

function fsyncFile(path) {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** <out>/weft and its names (and the `programs` file listing them), each renamed into place: a reader sees an old file or a whole new one. */
function publish(built, out) {
  mkdirSync(out, { recursive: true });
  const staged = join(out, `.weft-staged.${process.pid}.tmp`);
  copyFileSync(built, staged);
  chmodSync(staged, 0o755);
  fsyncFile(staged);
  try {
    for (const name of ["weft", ...TYPES]) {
      const link = join(out, `.${name}.${process.pid}.tmp`);
      rmSync(link, { force: true });
      linkSync(staged, link);
      renameSync(link, join(out, name));
    }
    writeProgramsFile(out);
  } finally {
    rmSync(staged, { force: true });
  }
}

/** The Node.js single executable in work/: returns its path. */
async function nodeExecutable(work, version, { codeCache, strip }) {
  const bundled = join(work, "weft.cjs");
  const id = await bundle(bundled, version, "sea");
  const bundleBytes = readFileSync(bundled);
  if (bundleBytes.some((byte) => byte > 0x7f)) throw new Error("the bundle is not plain ASCII");
  const main = join(work, "main.cjs");
  writeFileSync(main, seaMain(bundleBytes, id));
  const addons = Object.fromEntries(Object.entries(addonPaths(root)).map(([name, path]) => [`${name}.node`, path]));
  const config = {
    main,
    output: join(work, "weft.blob"),
    disableExperimentalSEAWarning: true,
    useCodeCache: codeCache,
    assets: { bundle: bundled, ...addons },
  };
  writeFileSync(join(work, "sea-config.json"), JSON.stringify(config, null, 2));
  // The blob must come from the very node binary it is injected into (the code cache is V8's).
  execFileSync(process.execPath, ["--experimental-sea-config", join(work, "sea-config.json")], { stdio: ["ignore", "ignore", "inherit"] });
  const exe = join(work, "weft");
  copyFileSync(process.execPath, exe);
  chmodSync(exe, 0o755);
  // Addons resolve napi_* through the dynamic symbol table, which strip keeps.
  if (strip) execFileSync("strip", ["--strip-all", exe], { stdio: "inherit" });
  const { inject } = await import("postject");
  await inject(exe, "NODE_SEA_BLOB", readFileSync(config.output), { sentinelFuse: SEA_FUSE });
  return exe;
}

/**
 * The Bun-compiled executable in work/: returns its path. The bundle is the script form's (the
 * addons inside it, written to weft's cache on a node's first run as in every form); Bun compiles it
 * to bytecode ahead of time, so there is no loader and no code cache of weft's own to keep. The
 * executable is Bun's runtime of scripts/project-bun, named by --compile-executable-path, so the build
 * never downloads one.
 */
async function bunExecutable(work, version, { baseline }) {
  const bun = execFileSync("bash", [join(root, "scripts/project-bun"), ...(baseline ? ["--baseline"] : [])], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  }).trim();
  const bundled = join(work, "weft.cjs");
  await bundle(bundled, version, "bun");
  const exe = join(work, "weft");
  execFileSync(
    bun,
    [
      "build",
      "--compile",
      "--bytecode",
      "--format=cjs",
      `--target=bun-linux-x64${baseline ? "-baseline" : ""}`,
      `--compile-executable-path=${bun}`,
      "--outfile",
      exe,
      bundled,
    ],
    { cwd: work, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, BUN_INSTALL_CACHE_DIR: join(work, "bun-cache") } },
  );
  return exe;
}

export async function buildStandalone({
  out = join(root, "dist/standalone"),
  runtime = "node",
  baseline = false,
  codeCache = true,
  strip = true,
  scriptOnly = false,
} = {}) {
  if (runtime !== "node" && runtime !== "bun") throw new Error(`--runtime ${runtime}: the runtimes are node and bun`);
  for (const needed of ["gen/validators.js", "build/native/weft.node"]) {
    try {
      readFileSync(join(root, needed));
    } catch {
      throw new Error(`${needed} is missing: run "node scripts/build.mjs" (make build) first`);
    }
  }
  const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
  if (scriptOnly) {
    mkdirSync(out, { recursive: true });
    // CommonJS even when out/ is inside this "type": "module" repository and linked under bare names.
    writeFileSync(join(out, "package.json"), '{ "type": "commonjs" }\n');
    const tmp = join(out, `.weft.cjs.${process.pid}.tmp`);
    await bundle(tmp, version, "script");
    chmodSync(tmp, 0o755);
    renameSync(tmp, join(out, "weft.cjs"));
    return { executable: join(out, "weft.cjs") };
  }
  const work = mkdtempSync(join(root, "build/.standalone-"));
  try {
    const exe = runtime === "bun" ? await bunExecutable(work, version, { baseline }) : await nodeExecutable(work, version, { codeCache, strip });
    // Smoke test before publishing: the executable answers VERSION for a type named explicitly.
    const answer = execFileSync(exe, [TYPES[0]], {
      env: { CNI_COMMAND: "VERSION", PATH: "/usr/bin:/bin", WEFT_CACHE_DIR: join(work, "cache") },
      input: "{}",
      encoding: "utf8",
    });
    if (!JSON.parse(answer).supportedVersions) throw new Error(`the built executable answered VERSION with ${answer}`);
    publish(exe, out);
    return { executable: join(out, "weft") };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      out: { type: "string" },
      runtime: { type: "string" },
      baseline: { type: "boolean" },
      "no-code-cache": { type: "boolean" },
      "no-strip": { type: "boolean" },
      "script-only": { type: "boolean" },
    },
  });
  const started = Date.now();
  const { executable } = await buildStandalone({
    out: values.out ? resolve(values.out) : undefined,
    runtime: values.runtime ?? process.env.WEFT_STANDALONE_RUNTIME ?? "node",
    baseline: values.baseline,
    codeCache: !values["no-code-cache"],
    strip: !values["no-strip"],
    scriptOnly: values["script-only"],
  });
  console.log(
    `built ${executable}${values["script-only"] ? "" : ` and its names ${TYPES.join(", ")}`} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
}
