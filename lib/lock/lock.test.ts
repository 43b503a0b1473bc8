import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CniError } from "../errors/cni.js";
import { acquireLock, type HeldLock } from "./lock.js";

let dir: string;
let cache: string;
const savedCache = process.env.WEFT_CACHE_DIR;
const held: HeldLock[] = [];
const children: ChildProcess[] = [];

beforeAll(() => {
  cache = mkdtempSync(join(tmpdir(), "weft-lock-cache-"));
  process.env.WEFT_CACHE_DIR = join(cache, "c");
});

afterAll(() => {
  if (savedCache === undefined) delete process.env.WEFT_CACHE_DIR;
  else process.env.WEFT_CACHE_DIR = savedCache;
  rmSync(cache, { recursive: true, force: true });
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-lock-"));
});

afterEach(() => {
  for (const lock of held.splice(0)) lock.release();
  for (const child of children.splice(0)) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

async function take(path: string, timeoutMs: number): Promise<HeldLock> {
  const lock = await acquireLock(path, { timeoutMs, mode: 0o750 });
  held.push(lock);
  return lock;
}

async function rejection(promise: Promise<unknown>): Promise<CniError> {
  try {
    await promise;
  } catch (err) {
    return err as CniError;
  }
  throw new Error("expected the promise to reject");
}

/** flock(1) from util-linux holding `path` until killed: another process, another implementation. */
function flockHolder(path: string): Promise<ChildProcess> {
  const child = spawn("flock", ["--no-fork", "--exclusive", path, "sh", "-c", "echo locked; exec sleep 60"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.stdout.once("data", () => resolve(child));
    child.once("error", reject);
  });
}

describe("acquireLock", () => {
  it("creates the lock file with the given mode and takes it at once when free", async () => {
    const path = join(dir, "lock");
    const lock = await take(path, 1000);
    expect(lock.path).toBe(path);
    expect(statSync(path).mode & 0o777).toBe(0o750);
  });

  it("fails with code 11 naming the file and the holder when the wait times out", async () => {
    const path = join(dir, "lock");
    await take(path, 1000);
    // That it waits before giving up is the next test's: a lock that fails at once when held fails there.
    const err = await rejection(take(path, 200));
    expect(err).toBeInstanceOf(CniError);
    expect(err.code).toBe(11);
    expect(err.message).toContain(`waiting for the lock on ${path}`);
    expect(err.message).toContain(`held by pid ${process.pid}`);
  });

  it("waits for a holder that releases within the timeout", async () => {
    const path = join(dir, "lock");
    const first = await take(path, 1000);
    setTimeout(() => first.release(), 100);
    const second = await take(path, 20_000);
    expect(second.path).toBe(path);
  });

  it("leaves nothing behind after a timeout: no descriptor, no waiter that takes the lock later", async () => {
    const path = join(dir, "lock");
    const first = await take(path, 1000);
    const descriptors = readdirSync("/proc/self/fd").length;
    await rejection(take(path, 50));
    expect(readdirSync("/proc/self/fd").length).toBe(descriptors);
    first.release();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const child = spawn("flock", ["--nonblock", "--exclusive", path, "true"]);
    children.push(child);
    const code = await new Promise((resolve) => child.on("exit", resolve));
    expect(code).toBe(0);
  });

  it("excludes and is excluded by flock(1), and the kernel releases a killed holder's lock", async () => {
    const path = join(dir, "lock");
    const holder = await flockHolder(path);
    const err = await rejection(take(path, 150));
    expect(err.code).toBe(11);
    expect(err.message).toContain(`held by pid`);
    holder.kill("SIGKILL");
    const lock = await take(path, 5000);
    expect(lock.path).toBe(path);
  });

  it("reports a lock file it cannot open as an I/O error naming it", async () => {
    const path = join(dir, "missing", "lock");
    const err = await rejection(take(path, 100));
    expect(err.code).toBe(5);
    expect(err.message).toContain(path);
  });
});
