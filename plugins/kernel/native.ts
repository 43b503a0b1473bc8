import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, renameSync, statSync, writeSync, type Stats } from "node:fs";
import { join } from "node:path";
import { CniError, ErrorCode } from "../cni/errors.js";

/**
 * Native addons ride inside the single-file executables as base64 (see scripts/native-addons.mjs).
 * The first run writes each one to <cache>/<sha256>/<name>.node and every later run dlopens that
 * file directly, so the bytes are decoded only on a cache miss. The cache is root's: every
 * directory is created 0700, and one not owned by us or writable by others is refused, since
 * loading a planted .node file would run its code as root.
 */
export interface EmbeddedAddon {
  name: string;
  sha256: string;
  bytes(): Uint8Array;
}

export const DEFAULT_CACHE_DIR = "/var/cache/weft";

export function cacheDir(): string {
  return process.env.WEFT_CACHE_DIR || DEFAULT_CACHE_DIR;
}

function assertPrivate(path: string, stats: Stats): void {
  const uid = process.geteuid?.() ?? 0;
  if (!stats.isDirectory() || stats.uid !== uid || (stats.mode & 0o022) !== 0) {
    throw new CniError(
      ErrorCode.IOFailure,
      `native addon cache ${path} is not a private directory of uid ${uid} (mode ${(stats.mode & 0o777).toString(8)}, owner ${stats.uid}): remove it and retry`,
    );
  }
}

function ensurePrivateDir(path: string): void {
  try {
    mkdirSync(path, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      mkdirSync(path, { recursive: true, mode: 0o700 });
    } else if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
      throw err;
    }
  }
  assertPrivate(path, lstatSync(path));
}

function extract(addon: EmbeddedAddon, dir: string, file: string): void {
  ensurePrivateDir(cacheDir());
  ensurePrivateDir(dir);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, "wx", 0o500);
  try {
    const data = addon.bytes();
    let offset = 0;
    while (offset < data.length) offset += writeSync(fd, data, offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  // rename is atomic: a concurrent first run sees either no file or a whole one.
  renameSync(tmp, file);
}

const loaded = new Map<string, unknown>();

function lstatExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

export function loadEmbeddedAddon<T>(addon: EmbeddedAddon): T {
  const cached = loaded.get(addon.sha256);
  if (cached) return cached as T;
  const dir = join(cacheDir(), addon.sha256);
  const file = join(dir, `${addon.name}.node`);
  let present = false;
  try {
    assertPrivate(dir, statSync(dir));
    present = statSync(file).isFile();
  } catch (err) {
    if (err instanceof CniError) throw err;
  }
  try {
    if (!present) extract(addon, dir, file);
    const module = { exports: {} as T };
    try {
      process.dlopen(module, file);
    } catch (err) {
      // A newer build's first run may have just pruned this cache entry as stale (scripts/loader.js).
      if (!present || lstatExists(file)) throw err;
      extract(addon, dir, file);
      process.dlopen(module, file);
    }
    loaded.set(addon.sha256, module.exports);
    return module.exports;
  } catch (err) {
    if (err instanceof CniError) throw err;
    throw new CniError(ErrorCode.IOFailure, `failed to load native addon ${addon.name} from ${file}: ${(err as Error).message}`);
  }
}
