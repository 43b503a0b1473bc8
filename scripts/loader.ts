// The first lines of every weft executable, bundled with lib/native/cache.ts by scripts/native-addons.mjs;
// the rest of the file is its parts, one per line pair "//WEFT-PART <name>" + "//<base64 of brotli>":
// the plugin's bundle and the native addons. Parts sit in line comments because that is the cheapest
// text for Node to read past at every start. The single executable (scripts/standalone.mjs) starts
// with this loader too, as its main script; its parts are assets of the executable, and it serves
// whichever program it is invoked as.
//
// The bundle is unpacked once into weft's cache (<cache>/<bundle sha256>/bundle.js, beside the native
// addons) and compiled with a V8 code cache per program and verb (<type>.<verb>.jscache), so a start
// neither decompresses nor parses what an earlier start of the same verb already did. The cache is
// only an optimisation: unusable, missing or rejected, it means unpacking and compiling as usual, with
// one line on stderr when it is unusable. The rule for trusting it is lib/native/cache.ts; the bundle
// (lib/native/native.ts) uses this same instance for the addons.
// A code cache is written only by a run that succeeded: it holds the functions its run compiled, and
// a failed run (the first ADDs of a node often fail, before flannel has written subnet.env) compiles
// only its error path, which would leave every later ADD compiling the rest (about 10 ms, measured).
// A build's first run on a node also removes the cache's stale entries (WeftCache.pruneOnFirstRun);
// the Bun form, which has no loader, does so when it first writes its addon (lib/native/native.ts).
//
// It runs as the executable's CommonJS main script: `require`, `module`, `__filename` and
// `__dirname` are that script's.
import * as fs from "node:fs";
import { weftCache } from "../lib/native/cache.js";

/** Filled in by the build. */
declare const STANDALONE: boolean;
declare const BUNDLE_SHA256: string;
declare const PLUGIN_TYPE: string;

const cache = weftCache();
const verb = /^[A-Z]{1,8}$/.test(process.env.CNI_COMMAND || "") ? process.env.CNI_COMMAND! : "NONE";

/** The single executable's name as invoked (a hard link per type, or "weft <type>"): only a cache key. */
function invokedAs(): string {
  const base = (require("node:path") as typeof import("node:path")).basename(process.argv0);
  const name = base === "weft" && process.argv[2] ? `weft-${process.argv[2]}` : base;
  return /^[a-z0-9-]{1,40}$/.test(name) ? name : "other";
}

/** A part of this file, decompressed; or of the single executable, an asset. */
function part(name: string): Buffer {
  if (STANDALONE) return Buffer.from((require("node:sea") as typeof import("node:sea")).getRawAsset(name) as ArrayBuffer);
  const text = fs.readFileSync(__filename, "latin1");
  const marker = `\n//WEFT-PART ${name}\n//`;
  const begin = text.indexOf(marker);
  if (begin < 0) throw new Error(`weft: ${__filename} has no part ${name}: the file is damaged, reinstall it`);
  const start = begin + marker.length;
  const end = text.indexOf("\n", start);
  const zlib = require("node:zlib") as typeof import("node:zlib");
  return zlib.brotliDecompressSync(Buffer.from(text.slice(start, end < 0 ? undefined : end), "base64"));
}

/** The bundle's source: from the cache when a verified copy is there, else unpacked (and cached). */
function bundleSource(dir: string | null): string {
  const verified = dir ? cache.openVerified(`${dir}/bundle.js`, BUNDLE_SHA256) : undefined;
  if (verified) {
    try {
      return (verified.data || fs.readFileSync(verified.fd)).toString("latin1");
    } catch (err) {
      cache.warn(`read ${dir}/bundle.js: ${(err as NodeJS.ErrnoException).code || (err as Error).message}`);
    } finally {
      fs.closeSync(verified.fd);
    }
  }
  const data = part("bundle");
  // Hashed and stamped now (this run pays for node:crypto), so that the next start need not.
  if (cache.usable() && cache.write(`${dir}/bundle.js`, data)) {
    const written = cache.openVerified(`${dir}/bundle.js`, BUNDLE_SHA256);
    if (written) fs.closeSync(written.fd);
  }
  return data.toString("latin1");
}

const dir = cache.dir(BUNDLE_SHA256);
cache.pruneOnFirstRun(BUNDLE_SHA256);
const source = bundleSource(dir);
const codeCacheFile = `${dir}/${STANDALONE ? invokedAs() : PLUGIN_TYPE}.${verb}.jscache`;
const cached = cache.usable() ? cache.read(codeCacheFile) : undefined;
const vm = require("node:vm") as typeof import("node:vm");
const script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __weftPart) {${source}\n})`, {
  filename: __filename,
  ...(cached === undefined ? {} : { cachedData: cached }),
});
if (cached === undefined || script.cachedDataRejected) {
  process.once("exit", (code) => {
    if (code !== 0 || !cache.usable()) return;
    try {
      cache.write(codeCacheFile, script.createCachedData());
    } catch (err) {
      cache.warn(`code cache: ${(err as Error).message}`);
    }
  });
}
(script.runInThisContext() as (this: unknown, ...args: unknown[]) => void).call(
  module.exports,
  module.exports,
  require,
  module,
  __filename,
  __dirname,
  part,
);
