// weft's cache and the one rule for trusting it. scripts/loader.ts (bundled into every executable's
// first lines) and lib/native/native.ts both use it; in an executable the loader's instance sits on
// globalThis and the bundle uses that one, so the chain is checked once per run and "not used" is
// said at most once.
//
// Trusted: the cache root and each <sha256> directory below it, lstat'ed (never a symlink), a
// directory, owned by the effective user and not writable by group or others; the root's ancestors
// lstat'ed too, owned by root or the effective user, and not writable by group or others unless
// sticky (/tmp), so that nobody else can rename a directory of the chain away. Every part is checked
// by its full sha256 before use (openVerified). Any problem means running without the cache, with
// one line on stderr.
//
// Hashing costs little (0.3 ms for 100 kB) but node:crypto costs 4-6 ms to load (it pulls in
// streams), which every start would pay, so a file is hashed in full once and then known by a stamp
// beside it, <file>.verified: its sha256, device, inode, size and ctime (ns) when it was hashed.
// Any change to the bytes (write, truncate, a file renamed over it) changes the inode or the ctime,
// which no system call sets to a chosen value, and only the effective user can write in a trusted
// chain; so a matching stamp says the bytes are the ones hashed, and anything else is hashed again.
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as pathModule from "node:path";
import { writeFileAtomically } from "../files/atomic-write.js";

export interface WeftCache {
  readonly root: string;
  /** Says, once per run, that the cache is not used and why; the cache is then left alone. */
  warn(reason: string): void;
  usable(): boolean;
  /** <root>/<name>, created 0700 when missing and checked with the chain above it; null when not usable. */
  dir(name: string): string | null;
  /** An fd open for reading on file, never through a symlink at its end. */
  openFile(file: string): number;
  /** An fd on a file of the cache; undefined when it does not exist, null after a warning. */
  open(file: string): number | null | undefined;
  /**
   * { fd, data? } for a file of the cache whose bytes have the sha256 `sha` (data: its bytes when
   * they were read to be hashed); undefined when it does not exist; null after a warning (a
   * mismatch also removes the file). The caller uses this very fd, so nothing can swap the file.
   */
  openVerified(file: string, sha: string): { fd: number; data?: Buffer } | null | undefined;
  /** Hex sha256; node:crypto is loaded only when something is hashed. */
  sha256(data: Uint8Array): string;
  /** The whole content of an fd, from its current offset. */
  readFd(fd: number): Buffer;
  /** A file of the cache, whole; undefined when missing or not readable (the latter said). */
  read(file: string): Buffer | undefined;
  /** Writes to a temporary name and renames (a concurrent run sees no file or a whole one); throws, leaving nothing. */
  writeFile(file: string, data: Uint8Array | string, mode: number): void;
  /** writeFile into the cache; false after a warning. */
  write(file: string, data: Uint8Array, mode?: number): boolean;
  /** Removes a file found not to match its hash, so that the next run writes it again. */
  discard(file: string): void;
  /**
   * When this run created <root>/<name> (a build's first run on this node), removes the other
   * <sha256> directories nothing has changed for STALE_ENTRY_MS: other builds' bundles and addons,
   * so that upgrades do not pile up (one still in use is written again by its next run).
   */
  pruneOnFirstRun(name: string): void;
}

// In a CommonJS bundle `require` is Node's own; under vitest (ESM) one is made for this module.
const load: NodeJS.Require = typeof require === "function" ? require : createRequire(import.meta.url);

const KEY = Symbol.for("weft.cache");

export const DEFAULT_CACHE_DIR = "/var/cache/weft";

export const STALE_ENTRY_MS = 30 * 24 * 3600 * 1000;

class Untrusted extends Error {}

const errorText = (op: string, path: string, err: unknown): string => {
  const e = err as { code?: string; message?: string } | undefined;
  return `${op} ${path}: ${e?.code || e?.message || String(err)}`;
};

const errorCode = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code;

/** The cache of this process (one per process: the first call decides, from WEFT_CACHE_DIR). */
export function weftCache(): WeftCache {
  const registry = globalThis as unknown as Record<symbol, WeftCache | undefined>;
  const existing = registry[KEY];
  if (existing) return existing;
  const configured = process.env.WEFT_CACHE_DIR || DEFAULT_CACHE_DIR;
  const root = pathModule.resolve(configured);
  const uid = process.geteuid!();
  let unusable: string | undefined;
  let ancestorsChecked = false;
  const ready = new Set<string>();
  const created = new Set<string>();

  const cache: WeftCache = {
    root,
    warn(reason) {
      if (unusable !== undefined) return;
      unusable = reason;
      try {
        fs.writeSync(2, `weft: cache ${configured} not used: ${reason}; running without it\n`);
      } catch {
        // stderr closed: nothing to tell
      }
    },
    usable: () => unusable === undefined,
    dir(name) {
      if (unusable !== undefined) return null;
      const path = `${root}/${name}`;
      if (ready.has(path)) return path;
      try {
        if (!ancestorsChecked) {
          const parts = root.split("/").filter(Boolean);
          for (let i = 0; i < parts.length; i++) {
            const ancestor = `/${parts.slice(0, i).join("/")}`;
            const st = fs.lstatSync(ancestor);
            if (st.isSymbolicLink()) throw new Untrusted(`${ancestor} is a symbolic link`);
            if (!st.isDirectory()) throw new Untrusted(`${ancestor} is not a directory`);
            if (st.uid !== 0 && st.uid !== uid) throw new Untrusted(`${ancestor} is owned by uid ${st.uid}`);
            if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
              throw new Untrusted(`${ancestor} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`);
            }
          }
          ancestorsChecked = true;
        }
        for (const p of ready.has(root) ? [path] : [root, path]) {
          let st: fs.Stats | undefined;
          try {
            st = fs.lstatSync(p, { throwIfNoEntry: false });
          } catch (err) {
            throw new Untrusted(errorText("lstat", p, err));
          }
          if (st === undefined) {
            try {
              fs.mkdirSync(p, { mode: 0o700 });
              created.add(p);
            } catch (err) {
              if (errorCode(err) !== "EEXIST") throw new Untrusted(errorText("mkdir", p, err));
            }
            st = fs.lstatSync(p);
          }
          if (st.isSymbolicLink()) throw new Untrusted(`${p} is a symbolic link`);
          if (!st.isDirectory()) throw new Untrusted(`${p} is not a directory`);
          if (st.uid !== uid) throw new Untrusted(`${p} is owned by uid ${st.uid}, not ${uid}`);
          if ((st.mode & 0o022) !== 0) throw new Untrusted(`${p} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`);
          ready.add(p);
        }
        return path;
      } catch (err) {
        cache.warn(err instanceof Untrusted ? err.message : errorText("lstat", path, err));
        return null;
      }
    },
    // (Node opens every file close-on-exec.)
    openFile: (file) => fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW),
    open(file) {
      try {
        return cache.openFile(file);
      } catch (err) {
        if (errorCode(err) === "ENOENT") return undefined;
        cache.warn(errorText("open", file, err));
        return null;
      }
    },
    openVerified(file, sha) {
      const fd = cache.open(file);
      if (fd === undefined || fd === null) return fd;
      const stamp = `${file}.verified`;
      try {
        const st = fs.fstatSync(fd, { bigint: true });
        const id = `${sha} ${st.dev} ${st.ino} ${st.size} ${st.ctimeNs}\n`;
        let seen: string | undefined;
        try {
          const stampFd = cache.openFile(stamp);
          try {
            seen = fs.readFileSync(stampFd, "latin1");
          } finally {
            fs.closeSync(stampFd);
          }
        } catch {
          seen = undefined;
        }
        if (seen === id) return { fd };
        const data = fs.readFileSync(fd);
        if (cache.sha256(data) !== sha) {
          fs.closeSync(fd);
          cache.warn(`${file} does not match its sha256 (removed)`);
          cache.discard(file);
          cache.discard(stamp);
          return null;
        }
        if (cache.usable()) {
          try {
            cache.writeFile(stamp, id, 0o600);
          } catch {
            // hashed again next time
          }
        }
        return { fd, data };
      } catch (err) {
        fs.closeSync(fd);
        cache.warn(errorText("read", file, err));
        return null;
      }
    },
    sha256: (data) => (load("node:crypto") as typeof import("node:crypto")).createHash("sha256").update(data).digest("hex"),
    readFd: (fd) => fs.readFileSync(fd),
    read(file) {
      const fd = cache.open(file);
      if (fd === undefined || fd === null) return undefined;
      try {
        return cache.readFd(fd);
      } catch (err) {
        cache.warn(errorText("read", file, err));
        return undefined;
      } finally {
        fs.closeSync(fd);
      }
    },
    writeFile(file, data, mode) {
      const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data;
      writeFileAtomically(file, bytes, { mode, temporary: `${file}.${process.pid}.tmp`, durable: true });
    },
    write(file, data, mode = 0o600) {
      if (unusable !== undefined) return false;
      try {
        cache.writeFile(file, data, mode);
        return true;
      } catch (err) {
        cache.warn(errorText("write", file, err));
        return false;
      }
    },
    discard(file) {
      try {
        fs.unlinkSync(file);
      } catch {
        // another run replaced it first
      }
    },
    pruneOnFirstRun(keep) {
      if (!created.has(`${root}/${keep}`)) return;
      try {
        for (const name of fs.readdirSync(root)) {
          if (!/^[0-9a-f]{64}$/.test(name) || name === keep) continue;
          try {
            const st = fs.lstatSync(`${root}/${name}`);
            if (st.isDirectory() && st.uid === uid && Date.now() - st.mtimeMs > STALE_ENTRY_MS)
              fs.rmSync(`${root}/${name}`, { recursive: true, force: true });
          } catch {
            // another run removed it first, or it is not ours to remove
          }
        }
      } catch {
        // only housekeeping
      }
    },
  };
  registry[KEY] = cache;
  return cache;
}
