import { closeSync, constants, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";

export interface NewFileOptions {
  mode: number;
  /** fsync the data before closing: the bytes survive a power loss once the name does. */
  fsync: boolean;
}

export interface AtomicWriteOptions {
  mode: number;
  /**
   * Where the data is written before the rename: beside `path` (a rename does not cross file
   * systems), under a name no reader takes for one of its files.
   */
  temporary: string;
  /** fsync the data before the rename and the directory after it: the new file survives a power loss. */
  durable: boolean;
}

/**
 * Creates `path` and writes all of `data` into it. O_EXCL: never through a symlink planted at the
 * name; a file already there (left by a crashed writer that had this pid) is removed first. On
 * failure nothing is left at the name.
 */
export function writeNewFile(path: string, data: Uint8Array | string, options: NewFileOptions): void {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  let fd: number;
  try {
    fd = openSync(path, flags, options.mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    unlinkSync(path);
    fd = openSync(path, flags, options.mode);
  }
  try {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    for (let offset = 0; offset < bytes.length;) offset += writeSync(fd, bytes, offset);
    if (options.fsync) fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    removeQuietly(path);
    throw err;
  }
  closeSync(fd);
}

/**
 * Replaces `path` with a file holding `data`: written under a temporary name, then renamed over it,
 * so a reader sees the old file or the whole new one, never a part. On failure nothing is left at
 * the temporary name.
 */
export function writeFileAtomically(path: string, data: Uint8Array | string, options: AtomicWriteOptions): void {
  writeNewFile(options.temporary, data, { mode: options.mode, fsync: options.durable });
  try {
    renameSync(options.temporary, path);
  } catch (err) {
    removeQuietly(options.temporary);
    throw err;
  }
  if (options.durable) syncDirectory(dirname(path));
}

/** A file's creation, rename or removal is durable only once its directory is synced. */
export function syncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // never created, or already gone
  }
}
