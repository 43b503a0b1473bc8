import { nodeSea } from "../node/builtins.js";

/**
 * Whether this process runs as weft's single executable: a Node.js single executable application,
 * or an executable compiled by Bun, whose main script lives in Bun's embedded file system
 * (/$bunfs/...). Either way the executable itself is the program: its name says which one.
 */
export function isSingleExecutable(): boolean {
  if (process.versions.bun) return (process.argv[1] ?? "").startsWith("/$bunfs/");
  return nodeSea()?.isSea() ?? false;
}
