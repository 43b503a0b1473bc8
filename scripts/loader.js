// The first lines of every weft executable; the rest of the file is its parts, one per line pair
// "//WEFT-PART <name>" + "//<base64 of brotli>": the plugin's bundle and the native addons.
// Parts sit in line comments because that is the cheapest text for Node to read past at every start.
// The single executable (scripts/standalone.mjs) starts with this loader too, as its main script;
// its parts are assets of the executable, and it serves whichever type it is invoked as.
//
// The bundle is unpacked once into weft's cache (<cache>/<bundle sha256>/bundle.js, beside the native
// addons) and compiled with a V8 code cache per plugin and verb (<type>.<verb>.jscache), so a start
// neither decompresses nor parses what an earlier start of the same verb already did. The cache is
// only an optimisation: unusable, missing or rejected, it means unpacking and compiling as usual.
// A code cache is written only by a run that succeeded: it holds the functions its run compiled, and
// a failed run (the first ADDs of a node often fail, before flannel has written subnet.env) compiles
// only its error path, which would leave every later ADD compiling the rest (about 10 ms, measured).
// A build's first run on a node also removes the cache's entries nothing has changed for 30 days
// (other builds' bundles and addons; one still in use is unpacked again by its next run), so
// upgrades do not pile up.
(function () {
  "use strict";
  const fs = require("fs");
  const standalone = STANDALONE;
  const root = process.env.WEFT_CACHE_DIR || "/var/cache/weft";
  const dir = `${root}/${BUNDLE_SHA256}`;
  const verb = /^[A-Z]{1,8}$/.test(process.env.CNI_COMMAND || "") ? process.env.CNI_COMMAND : "NONE";
  /** The single executable's name as invoked (a hard link per type, or "weft <type>"): only a cache key. */
  const invokedAs = () => {
    const base = require("path").basename(process.argv0);
    const name = base === "weft" && process.argv[2] ? `weft-${process.argv[2]}` : base;
    return /^[a-z0-9-]{1,40}$/.test(name) ? name : "other";
  };
  const codeCacheFile = `${dir}/${standalone ? invokedAs() : PLUGIN_TYPE}.${verb}.jscache`;
  const uid = process.geteuid();
  // As for the native addons: only a directory of our own that nobody else can write to is trusted,
  // since what it holds is run as root.
  const isPrivate = (path) => {
    const st = fs.lstatSync(path);
    return st.isDirectory() && st.uid === uid && (st.mode & 0o022) === 0;
  };
  const trusted = () => {
    try {
      return isPrivate(root) && isPrivate(dir);
    } catch {
      return false;
    }
  };
  const STALE_MS = 30 * 24 * 3600 * 1000;
  /** Removes the entries of the cache (<sha256> directories only) that nothing changed for STALE_MS. */
  const pruneStale = () => {
    for (const name of fs.readdirSync(root)) {
      if (!/^[0-9a-f]{64}$/.test(name) || `${root}/${name}` === dir) continue;
      try {
        const st = fs.lstatSync(`${root}/${name}`);
        if (st.isDirectory() && st.uid === uid && Date.now() - st.mtimeMs > STALE_MS) fs.rmSync(`${root}/${name}`, { recursive: true, force: true });
      } catch {
        // another plugin removed it first, or it is not ours to remove
      }
    }
  };
  const makeDirs = () => {
    let created = false;
    for (const path of [root, dir]) {
      try {
        fs.mkdirSync(path, { mode: 0o700 });
        created = path === dir;
      } catch (err) {
        if (err.code !== "EEXIST") throw err;
      }
    }
    const ok = trusted();
    if (ok && created) {
      try {
        pruneStale();
      } catch {
        // only housekeeping
      }
    }
    return ok;
  };
  const writeAtomically = (file, data) => {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, data, { mode: 0o600, flag: "wx" });
    fs.renameSync(tmp, file);
  };
  /** A part of this file, decompressed; or of the single executable, an asset. */
  const part = (name) => {
    if (standalone) return Buffer.from(require("node:sea").getRawAsset(name));
    const text = fs.readFileSync(__filename, "latin1");
    const marker = `\n//WEFT-PART ${name}\n//`;
    const begin = text.indexOf(marker);
    if (begin < 0) throw new Error(`weft: ${__filename} has no part ${name}: the file is damaged, reinstall it`);
    const start = begin + marker.length;
    const end = text.indexOf("\n", start);
    return require("zlib").brotliDecompressSync(Buffer.from(text.slice(start, end < 0 ? undefined : end), "base64"));
  };

  let isTrusted = trusted();
  let source;
  if (isTrusted) {
    try {
      source = fs.readFileSync(`${dir}/bundle.js`, "latin1");
    } catch {
      source = undefined;
    }
  }
  if (source === undefined || source.length !== BUNDLE_LENGTH) {
    source = part("bundle").toString("latin1");
    try {
      isTrusted = makeDirs();
      if (isTrusted) writeAtomically(`${dir}/bundle.js`, source);
    } catch {
      isTrusted = false;
    }
  }
  let cached;
  if (isTrusted) {
    try {
      cached = fs.readFileSync(codeCacheFile);
    } catch {
      cached = undefined;
    }
  }
  const vm = require("vm");
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __weftPart) {${source}\n})`, {
    filename: __filename,
    cachedData: cached,
  });
  if (cached === undefined || script.cachedDataRejected) {
    process.once("exit", (code) => {
      if (code !== 0) return;
      try {
        if (makeDirs()) writeAtomically(codeCacheFile, script.createCachedData());
      } catch {
        // no code cache this time
      }
    });
  }
  script.runInThisContext().call(module.exports, module.exports, require, module, __filename, __dirname, part);
})();
