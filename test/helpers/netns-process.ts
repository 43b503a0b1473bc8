import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, closeSync, openSync } from "node:fs";

/**
 * A long-running process in a test namespace (an etcd member, a node agent), its stdout and stderr
 * appended to a log file. `ip netns exec` and `setpriv` exec in place, so the pid is the command's;
 * detached makes it the leader of a process group of its own, which signal() signals whole. The
 * parent-death signal kills it with the test process, whose exit handlers vitest's SIGTERM skips.
 */

export interface NetnsProcessOptions {
  /** The namespace's name (under /run/netns). */
  netns: string;
  /** The command and its arguments. */
  argv: string[];
  /** Appended to (the command's stdout and stderr, and a failed spawn's error). */
  logPath: string;
  /** Environment besides PATH. */
  env?: Record<string, string>;
  /** What errors call the process, e.g. "etcd lab: member m0". */
  name: string;
}

export interface NetnsProcess {
  /** The process's id (also its process group's); undefined when the spawn failed. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Its exit code, null while it runs or when a signal ended it. */
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  /** Resolves once it exited (or its spawn failed). */
  readonly exited: Promise<void>;
  /** To the whole process group; nothing when the process is gone. */
  signal(signal: NodeJS.Signals): void;
  /** Whether it exited within `timeoutMs`. */
  waitExit(timeoutMs: number): Promise<boolean>;
  /** SIGTERM, then kill() if it has not exited within `timeoutMs`; whether SIGTERM was enough. */
  stop(timeoutMs: number): Promise<boolean>;
  /** SIGKILL to the whole process group; throws if it has not exited within `timeoutMs`. */
  kill(timeoutMs?: number): Promise<void>;
}

const KILL_WAIT_MS = 10_000;

export function startInNetns(options: NetnsProcessOptions): NetnsProcess {
  return new Started(options);
}

class Started implements NetnsProcess {
  private readonly child: ChildProcess;
  private spawnFailed = false;
  readonly exited: Promise<void>;

  constructor(private readonly options: NetnsProcessOptions) {
    const log = openSync(options.logPath, "a");
    try {
      const child = spawn("ip", ["netns", "exec", options.netns, "setpriv", "--pdeathsig", "KILL", ...options.argv], {
        detached: true,
        stdio: ["ignore", log, log],
        env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...options.env },
      });
      this.child = child;
      this.exited = new Promise((resolve) => {
        child.once("exit", () => resolve());
        child.once("error", (err) => {
          this.spawnFailed = true;
          appendFileSync(options.logPath, `${options.name}: spawn failed: ${err.message}\n`);
          resolve();
        });
      });
    } finally {
      closeSync(log);
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return !this.spawnFailed && this.child.exitCode === null && this.child.signalCode === null;
  }

  get exitCode(): number | null {
    return this.child.exitCode;
  }

  get signalCode(): NodeJS.Signals | null {
    return this.child.signalCode;
  }

  signal(signal: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined || !this.running) return;
    try {
      process.kill(-pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }

  async waitExit(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([this.exited.then(() => true as const), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  async stop(timeoutMs: number): Promise<boolean> {
    if (!this.running) return true;
    this.signal("SIGTERM");
    if (await this.waitExit(timeoutMs)) return true;
    await this.kill();
    return false;
  }

  async kill(timeoutMs = KILL_WAIT_MS): Promise<void> {
    if (!this.running) return;
    this.signal("SIGKILL");
    if (!(await this.waitExit(timeoutMs))) throw new Error(`${this.options.name} (pid ${this.child.pid}) did not exit on SIGKILL`);
  }
}
