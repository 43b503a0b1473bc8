import { closeSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CniError, ErrorCode } from "../errors/cni.js";
import { weftCache, type WeftCache } from "./cache.js";

/**
 * Native addons ride inside the executables (see scripts/native-addons.mjs). The first run writes
 * each one to <cache>/<sha256>/<name>.node and later runs load that file, so the bytes are decoded
 * only on a cache miss. What is loaded runs as root, so the cache is used only when
 * lib/native/cache.ts trusts its chain of directories, and a file is loaded only when the sha256 of
 * its bytes, read from the very fd that is then dlopened (/proc/self/fd/N, so nothing can swap the
 * file in between), is the addon's. Otherwise the addon is written to a private temporary directory
 * and loaded from there: the cache is only an optimisation.
 */
export interface EmbeddedAddon {
  name: string;
  sha256: string;
  bytes(): Uint8Array;
}

const loaded = new Map<string, unknown>();

/**
 * dlopens the fd itself. It stays open for the life of the process: glibc knows a loaded library
 * by its name, and a later /proc/self/fd/N of another addon reusing the number would get the first
 * library back.
 */
function dlopenFd<T>(fd: number, module: { exports: T }): void {
  process.dlopen(module, `/proc/self/fd/${fd}`);
}

function loadFromCache<T>(cache: WeftCache, addon: EmbeddedAddon, module: { exports: T }): boolean {
  const dir = cache.dir(addon.sha256);
  if (dir === null) return false;
  cache.pruneOnFirstRun(addon.sha256);
  const file = `${dir}/${addon.name}.node`;
  let verified = cache.openVerified(file, addon.sha256);
  if (verified === undefined) {
    if (!cache.write(file, addon.bytes(), 0o500)) return false;
    verified = cache.openVerified(file, addon.sha256);
    // A newer build's first run may have pruned this entry as stale just now (pruneOnFirstRun).
    if (verified === undefined) cache.warn(`${file} vanished after it was written`);
  }
  if (!verified) return false;
  dlopenFd(verified.fd, module);
  return true;
}

/** Without the cache: the addon in a fresh 0700 directory of our own, removed once loaded. */
function loadPrivately<T>(cache: WeftCache, addon: EmbeddedAddon, module: { exports: T }): void {
  const dir = mkdtempSync(join(tmpdir(), "weft-addon-"));
  try {
    const file = join(dir, `${addon.name}.node`);
    cache.writeFile(file, addon.bytes(), 0o500);
    const fd = cache.openFile(file);
    if (cache.sha256(cache.readFd(fd)) !== addon.sha256) {
      closeSync(fd);
      throw new Error(`${file} does not match its sha256`);
    }
    dlopenFd(fd, module);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function loadEmbeddedAddon<T>(addon: EmbeddedAddon): T {
  const done = loaded.get(addon.sha256);
  if (done) return done as T;
  const cache = weftCache();
  const module = { exports: {} as T };
  try {
    if (!loadFromCache(cache, addon, module)) loadPrivately(cache, addon, module);
  } catch (err) {
    throw new CniError(ErrorCode.IOFailure, `failed to load native addon ${addon.name}: ${(err as Error).message}`);
  }
  loaded.set(addon.sha256, module.exports);
  return module.exports;
}
