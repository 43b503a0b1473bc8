import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PROGRAM_TYPES } from "../plugins/registry.ts";

/**
 * `<dir>/programs`: the names the executables in <dir> are installed under, one a line, from
 * plugins/registry.ts, so that scripts/install (a shell script, also run where there is no Node.js)
 * reads the list rather than repeating it.
 */
export function writeProgramsFile(dir) {
  const path = join(dir, "programs");
  writeFileSync(`${path}.${process.pid}.tmp`, `${PROGRAM_TYPES.join("\n")}\n`);
  renameSync(`${path}.${process.pid}.tmp`, path);
}
