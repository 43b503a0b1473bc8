// The first lines of every weft executable. The plugin's bundle follows in the comment at the end of
// the file; this loader compiles it with a V8 code cache kept beside the native addons
// (<cache>/<bundle sha256>/<type>.<verb>.jscache), so a plugin start skips parsing and compiling
// what earlier starts of the same verb already compiled. The cache is only an optimisation: an
// unusable, missing or rejected one means compiling as usual (and writing a new one at exit).
(function () {
  "use strict";
  const fs = require("fs");
  const vm = require("vm");
  const text = fs.readFileSync(__filename, "latin1");
  const begin = text.indexOf("/*WEFT-BUNDLE\n") + "/*WEFT-BUNDLE\n".length;
  // "*/" cannot stand inside the comment: the build wrote it as "*\x01/".
  const source = text.slice(begin, text.lastIndexOf("\n*/")).replaceAll("*\x01/", "*/");
  const root = process.env.WEFT_CACHE_DIR || "/var/cache/weft";
  const dir = `${root}/${BUNDLE_SHA256}`;
  const file = `${dir}/${PLUGIN_TYPE}.${/^[A-Z]{1,8}$/.test(process.env.CNI_COMMAND || "") ? process.env.CNI_COMMAND : "NONE"}.jscache`;
  const uid = process.geteuid();
  // Like the native addons: only a directory of our own that nobody else can write to is trusted.
  const isPrivate = (path) => {
    const st = fs.lstatSync(path);
    return st.isDirectory() && st.uid === uid && (st.mode & 0o022) === 0;
  };
  let cached;
  try {
    if (isPrivate(root) && isPrivate(dir)) cached = fs.readFileSync(file);
  } catch {
    cached = undefined;
  }
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: __filename,
    cachedData: cached,
  });
  if (cached === undefined || script.cachedDataRejected) {
    process.once("exit", () => {
      try {
        for (const path of [root, dir]) {
          try {
            fs.mkdirSync(path, { mode: 0o700 });
          } catch (err) {
            if (err.code !== "EEXIST") throw err;
          }
          if (!isPrivate(path)) return;
        }
        const tmp = `${file}.${process.pid}.tmp`;
        fs.writeFileSync(tmp, script.createCachedData(), { mode: 0o600, flag: "wx" });
        fs.renameSync(tmp, file);
      } catch {
        // no cache this time
      }
    });
  }
  script.runInThisContext().call(module.exports, module.exports, require, module, __filename, __dirname);
})();
