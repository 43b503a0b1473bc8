import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from "node:fs";

/** A store's file as read by readSmallFile. */
export type SmallFile =
  | { state: "read"; bytes: Buffer }
  | { state: "missing" }
  /** A symlink, anything but a regular file, or a file larger than the bound: `reason` completes "<path> ...". */
  | { state: "refused"; reason: string };

/** "a FIFO", "a character device"...: what a file that should be a regular one is instead. */
export function fileType(stats: Stats): string {
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  if (stats.isDirectory()) return "a directory";
  if (stats.isSocket()) return "a socket";
  if (stats.isSymbolicLink()) return "a symlink";
  return "a regular file";
}

/**
 * Reads a file of a store that holds a few bytes (a reservation, a cursor, a saved config),
 * whatever someone put at its name: a symlink is not followed (O_NOFOLLOW), opening a FIFO does not
 * wait for a writer (O_NONBLOCK), anything but a regular file is refused after fstat, before a read
 * (a FIFO would block, /dev/zero never ends), and at most `maxBytes` + 1 bytes are read. Other
 * errors (EACCES, EIO) are thrown as they come.
 */
export function readSmallFile(path: string, maxBytes: number): SmallFile {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { state: "missing" };
    if (code === "ELOOP") return { state: "refused", reason: "is a symlink, not a regular file" };
    // open(2) of a unix socket
    if (code === "ENXIO") return { state: "refused", reason: "is a socket, not a regular file" };
    throw err;
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) return { state: "refused", reason: `is ${fileType(stats)}, not a regular file` };
    // The bound is on the bytes read, not on fstat's size: a file can grow under the read, and a
    // procfs or sysfs file says 0.
    const buffer = Buffer.allocUnsafe(maxBytes + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, length);
      if (n === 0) break;
      length += n;
      if (length > maxBytes) return { state: "refused", reason: `is larger than ${maxBytes} bytes` };
    }
    return { state: "read", bytes: Buffer.from(buffer.subarray(0, length)) };
  } finally {
    closeSync(fd);
  }
}
