import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from "node:fs";
import { CniError, ErrorCode } from "../errors/cni.js";
import { fileType } from "../files/small-file.js";
import { LOCK_EX, LOCK_NB, weftSyscalls, type WeftSyscalls } from "../native/syscalls.js";

/** An exclusive flock(2) on a file, held until release() or the death of the process. */
export interface HeldLock {
  readonly path: string;
  release(): void;
}

export interface LockOptions {
  /** Give up after this long and fail with code 11 (try again later). */
  timeoutMs: number;
  /** The mode of the lock file when it has to be created. */
  mode?: number;
}

/**
 * Takes an exclusive flock on `path`, creating the file if needed. The lock belongs to this open
 * file description, so the kernel drops it when the process dies: a crashed holder never leaves a
 * stale lock. What it cannot fix is a holder that hangs (plugins#561), so the wait is bounded.
 */
export async function acquireLock(path: string, options: LockOptions): Promise<HeldLock> {
  const syscalls = weftSyscalls();
  let fd: number;
  try {
    // O_NOFOLLOW: a symlink planted as the lock file must not make weft create or lock its target.
    // O_NONBLOCK: a FIFO planted there must not block the open, which the timeout does not cover.
    fd = openSync(path, constants.O_RDONLY | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, options.mode ?? 0o600);
  } catch (err) {
    throw new CniError(ErrorCode.IOFailure, `failed to open lock file ${path}: ${(err as Error).message}`);
  }
  refuseAllButRegularFile(path, fd);
  if (tryLock(syscalls, path, fd)) return heldLock(path, fd);
  return waitForLock(syscalls, path, fd, options.timeoutMs);
}

/** A lock on a FIFO or a device would serialize nothing weft agrees on with other plugins. Closes fd when refusing. */
function refuseAllButRegularFile(path: string, fd: number): void {
  let stats: Stats;
  try {
    stats = fstatSync(fd);
  } catch (err) {
    closeSync(fd);
    throw new CniError(ErrorCode.IOFailure, `failed to open lock file ${path}: ${(err as Error).message}`);
  }
  if (stats.isFile()) return;
  closeSync(fd);
  throw new CniError(
    ErrorCode.IOFailure,
    `failed to open lock file ${path}: it is ${fileType(stats)}, not a regular file`,
    "remove it: the plugin creates the lock file",
  );
}

/** One non-blocking attempt; false while another open file holds the lock. Closes fd on failure. */
function tryLock(syscalls: WeftSyscalls, path: string, fd: number): boolean {
  try {
    syscalls.flock(fd, LOCK_EX | LOCK_NB);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EAGAIN") return false;
    closeSync(fd);
    throw new CniError(ErrorCode.IOFailure, `failed to lock ${path}: ${(err as Error).message}`);
  }
}

function heldLock(path: string, fd: number): HeldLock {
  let held = true;
  return {
    path,
    release() {
      if (!held) return;
      held = false;
      // Closing the last descriptor of the open file drops the flock.
      closeSync(fd);
    },
  };
}

/** Longest pause between two attempts while another process holds the lock. */
const MAX_POLL_INTERVAL_MS = 10;

/**
 * Waits by retrying LOCK_NB with a growing pause, not with a blocking flock on a worker thread
 * (weftSyscalls().flockAsync): a thread blocked in flock cannot be cancelled, and Node's exit joins
 * the worker threads, so a plugin that gave up would still hang at exit until the holder let go,
 * which is the very hang the timeout is for. flock(2) queues no one fairly either way.
 */
async function waitForLock(syscalls: WeftSyscalls, path: string, fd: number, timeoutMs: number): Promise<HeldLock> {
  const deadline = Date.now() + timeoutMs;
  for (let pause = 1; ; pause = Math.min(pause * 2, MAX_POLL_INTERVAL_MS)) {
    const left = deadline - Date.now();
    if (left <= 0) {
      const err = timeoutError(path, fd, timeoutMs);
      closeSync(fd);
      throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
    if (tryLock(syscalls, path, fd)) return heldLock(path, fd);
  }
}

function timeoutError(path: string, fd: number, timeoutMs: number): CniError {
  const holder = lockHolder(fd);
  return new CniError(
    ErrorCode.TryAgainLater,
    `timed out after ${timeoutMs} ms waiting for the lock on ${path}${holder ? `, held by ${holder}` : ""}`,
    "another process holds the lock and has not released it; if it hangs, ending it releases the lock",
  );
}

/** "pid 1234 (host-local)" from /proc/locks, for the timeout message; undefined when unknown. */
function lockHolder(fd: number): string | undefined {
  try {
    const inode = fstatSync(fd).ino;
    for (const line of readFileSync("/proc/locks", "utf8").split("\n")) {
      // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; waiters are the lines with "->".
      const fields = line.trim().split(/\s+/);
      if (fields[1] !== "FLOCK" || fields[4] === undefined || !fields[5]?.endsWith(`:${inode}`)) continue;
      const pid = fields[4];
      let comm = "";
      try {
        comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      } catch {
        // the holder may have just exited
      }
      return comm ? `pid ${pid} (${comm})` : `pid ${pid}`;
    }
  } catch {
    // only a diagnostic
  }
  return undefined;
}
