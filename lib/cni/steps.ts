import { asCniError } from "../errors/cni.js";

/**
 * "Nothing half-made" as a structure: every step that creates something registers how to undo it,
 * and a failure runs the undos newest first. An undo that fails is reported and the rest still run.
 */
export class Rollback {
  private readonly undos: Array<{ what: string; undo: () => Promise<unknown> | unknown }> = [];

  push(what: string, undo: () => Promise<unknown> | unknown): void {
    this.undos.push({ what, undo });
  }

  async run(log: (message: string) => void): Promise<void> {
    for (let entry = this.undos.pop(); entry; entry = this.undos.pop()) {
      try {
        await entry.undo();
      } catch (err) {
        log(`rollback: failed to ${entry.what}: ${(err as Error).message}`);
      }
    }
  }
}

/** Runs one named step; a failure says which step failed ("failed to set bridge addr: ..."). */
export async function step<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw asCniError(err, `failed to ${name}`);
  }
}
