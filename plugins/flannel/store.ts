import { mkdirSync, readdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import { MAX_STDIN_BYTES } from "../../lib/cni/config.js";
import { writeFileAtomically } from "../../lib/files/atomic-write.js";
import { readSmallFile, type SmallFile } from "../../lib/files/small-file.js";
import type { JsonObject } from "./delegate-config.js";

/** The delegate got the saved bytes on its stdin, so no saved config is larger than a plugin reads there. */
export const MAX_SAVED_CONFIG_BYTES = MAX_STDIN_BYTES;

/** A delegate config saved at ADD, read back by DEL, CHECK and GC. */
export type SavedConfig =
  | { state: "saved"; bytes: Buffer; config: JsonObject & { type: string } }
  | { state: "missing" }
  /** Unreadable JSON or no delegate type: a crash before flannel wrote with fsync, or a hand edit. */
  | { state: "corrupt"; problem: string };

/**
 * The rendered delegate configs, one file per container id named after it, holding exactly the
 * bytes sent to the delegate: the Go plugin's layout (saveScratchNetConf), so either plugin deletes a
 * pod the other added. Written to a temporary name, fsynced and renamed, so a reader sees a whole
 * file or none.
 */
export class SavedConfigStore {
  constructor(readonly dataDir: string) {}

  path(containerId: string): string {
    return join(this.dataDir, containerId);
  }

  save(containerId: string, bytes: string): void {
    const path = this.path(containerId);
    try {
      mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
      // Container ids start with a letter or digit, so a dot-name never collides with one.
      writeFileAtomically(path, bytes, { mode: 0o600, temporary: join(this.dataDir, `.${containerId}.${process.pid}.tmp`), durable: true });
    } catch (err) {
      throw new CniError(ErrorCode.IOFailure, `failed to save the delegate config to ${path}: ${(err as Error).message}`);
    }
  }

  load(containerId: string): SavedConfig {
    const path = this.path(containerId);
    let file: SmallFile;
    try {
      file = readSmallFile(path, MAX_SAVED_CONFIG_BYTES);
    } catch (err) {
      throw new CniError(ErrorCode.IOFailure, `failed to read the saved delegate config ${path}: ${(err as Error).message}`);
    }
    if (file.state === "missing") return { state: "missing" };
    // Never through a symlink, never from a FIFO or a device: the file is weft's (or the Go
    // plugin's) own, written with rename.
    if (file.state === "refused") return { state: "corrupt", problem: `${path} ${file.reason}: not a saved delegate config` };
    const bytes = file.bytes;
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString("utf8"));
    } catch (err) {
      return { state: "corrupt", problem: `${path} is not JSON: ${(err as Error).message}` };
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      return { state: "corrupt", problem: `${path} does not hold a JSON object` };
    }
    const config = parsed as JsonObject;
    if (typeof config.type !== "string" || config.type === "") {
      return { state: "corrupt", problem: `${path} has no delegate type` };
    }
    return { state: "saved", bytes, config: config as JsonObject & { type: string } };
  }

  /**
   * Removes a container's file; one already gone is fine. Not synced: a removal lost in a crash only
   * brings back a file whose DEL is repeated (idempotent) or collected by GC.
   */
  remove(containerId: string): void {
    const path = this.path(containerId);
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw new CniError(ErrorCode.IOFailure, `failed to remove the saved delegate config ${path}: ${(err as Error).message}`);
    }
  }

  /** The container ids that have a file. */
  containerIds(): string[] {
    try {
      return readdirSync(this.dataDir).filter((name) => !name.startsWith("."));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw new CniError(ErrorCode.IOFailure, `failed to list ${this.dataDir}: ${(err as Error).message}`);
    }
  }
}
