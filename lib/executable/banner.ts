import { closeSync, openSync, readSync } from "node:fs";

// The script form's line 2, written by scripts/build.mjs as `// weft <build id> <type>`: how a weft
// executable says which program of which build it is. The build scripts import this module as it
// is (Node.js strips its types), so it imports nothing but Node's own modules.

const BANNER = /^#![^\n]*\n\/\/ weft (\S+) (\S+)\n/;

/** Line 2 of a script-form executable, as scripts/build.mjs writes it. */
export function bannerLine(buildId: string, type: string): string {
  return `// weft ${buildId} ${type}`;
}

/** The build id and type of a script-form weft executable; undefined for any other file. */
export function readWeftBanner(path: string): { version: string; type: string } | undefined {
  const head = Buffer.alloc(128);
  let length: number;
  try {
    const fd = openSync(path, "r");
    try {
      length = readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  const m = BANNER.exec(head.toString("latin1", 0, length));
  return m ? { version: m[1]!, type: m[2]! } : undefined;
}
