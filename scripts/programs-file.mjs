import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PROGRAMS } from "../plugins/registry.ts";

/** The names of the programs of one kind ("cni" or "agent"), in plugins/registry.ts's order. */
function programNames(kind) {
  return PROGRAMS.filter((p) => p.kind === kind).map((p) => p.type);
}

function writeList(path, names) {
  writeFileSync(`${path}.${process.pid}.tmp`, names.map((n) => `${n}\n`).join(""));
  renameSync(`${path}.${process.pid}.tmp`, path);
}

/**
 * Two lists beside the executables in <dir>, one name a line, from plugins/registry.ts, so that
 * scripts/install (a shell script, also run where there is no Node.js) reads them rather than
 * repeating them: `programs`, the CNI plugins (installed into the CNI bin dir and run there by the
 * runtime), and `agents`, the node agent (flanneld: a daemon, not a CNI plugin, installed only where
 * the installer is told to put it).
 */
export function writeProgramsFile(dir) {
  writeList(join(dir, "programs"), programNames("cni"));
  writeList(join(dir, "agents"), programNames("agent"));
}
