import { statSync } from "node:fs";
import { basename } from "node:path";
import { readWeftBanner } from "./banner.js";
import { isSingleExecutable } from "./single-executable.js";

// Which program of which build an executable is: a script form by its banner (banner.ts), the
// single executable, which is every program, by its inode.

/**
 * Whether path is the very file this process runs from, when that is weft's standalone executable
 * (a hard link or symlink of it under another CNI name): then it is this build, and no banner is
 * needed to trust it.
 */
function isThisStandaloneExecutable(path: string): boolean {
  try {
    if (!isSingleExecutable()) return false;
    const self = statSync(process.execPath);
    const delegate = statSync(path);
    return self.dev === delegate.dev && self.ino === delegate.ino;
  } catch {
    return false;
  }
}

/**
 * The program the executable at `path` runs, when it is weft's of the build `buildId`: the
 * banner's type (what the file runs whatever name it is installed under), or, for this very
 * single executable, the name it was found under. Undefined for anything else.
 */
export function weftProgramOf(path: string, buildId: string): string | undefined {
  const banner = readWeftBanner(path);
  if (banner) return banner.version === buildId ? banner.type : undefined;
  return isThisStandaloneExecutable(path) ? basename(path) : undefined;
}
