import { randomInt } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, removeNetns, type TestNetns } from "./netns.js";

/**
 * A lab's underlay: the network its hosts (etcd members, agent nodes) share, as a bridge alone in a
 * namespace (MTU 1500) with a private /24 of the lab's own, and a namespace per host joined to the
 * bridge by a veth. Nothing is made in the host's namespace: each veth is created inside the
 * underlay's namespace with its other end in the host's, so deleting the namespaces deletes every link.
 * The bridge holds .1 of the /24, from where a test reaches every host.
 */

/** A namespace on the underlay. */
export interface UnderlayHost {
  readonly name: string;
  readonly netns: TestNetns;
  /** Its address on the underlay. */
  readonly address: string;
  /** The underlay interface inside the namespace. */
  readonly ifName: string;
}

/** Who owns a lab, and what to sweep with its namespaces once that process is gone. */
export interface LabOwner {
  /** 8 hex digits, in every namespace's name (weftlab-<id>-...). */
  id: string;
  /** The lab's temp dir (under the system's, named weft-etcd-lab-*). */
  dir: string;
}

const RESERVATIONS = "/run/weft-etcd-lab";
export const LAB_DIR_PREFIX = "weft-etcd-lab-";

export class Underlay {
  readonly netns: TestNetns;
  private readonly made: TestNetns[] = [];
  private readonly ports: string[] = [];

  private constructor(
    private readonly owner: LabOwner,
    /** The file that holds the /24 for this lab. */
    readonly reservation: string,
    /** The /24's first three octets. */
    private readonly prefix: string,
  ) {
    this.netns = this.newNetns("underlay");
  }

  /** Reserves a /24 and makes the bridge; what was made is removed when a step fails. */
  static create(owner: LabOwner): Underlay {
    const { path, prefix } = reserveSubnet(owner);
    let underlay: Underlay | undefined;
    try {
      underlay = new Underlay(owner, path, prefix);
      underlay.netns.exec("ip", ["link", "add", "br0", "mtu", "1500", "type", "bridge", "forward_delay", "0"]);
      underlay.netns.exec("ip", ["addr", "add", `${prefix}.1/24`, "dev", "br0"]);
      underlay.netns.exec("ip", ["link", "set", "br0", "up"]);
      return underlay;
    } catch (err) {
      if (underlay) underlay.remove();
      else rmSync(path, { force: true });
      throw err;
    }
  }

  /** e.g. 172.31.17.0/24 */
  get subnet(): string {
    return `${this.prefix}.0/24`;
  }

  /** A namespace named after `name`, on the bridge by a veth (eth0 in it), with address .`host`. */
  attach(name: string, host: number): UnderlayHost {
    if (!Number.isInteger(host) || host < 2 || host > 254) throw new Error(`underlay: host number ${host} is not in 2 to 254`);
    const address = `${this.prefix}.${host}`;
    // Unique across labs, so a link that leaked into the host's namespace would be found by name.
    const port = `wl${this.owner.id.slice(0, 6)}h${host}`;
    if (this.ports.includes(port)) throw new Error(`underlay: ${address} is taken`);
    const netns = this.newNetns(name);
    this.netns.exec("ip", ["link", "add", port, "mtu", "1500", "type", "veth", "peer", "name", "eth0", "netns", netns.name, "mtu", "1500"]);
    this.ports.push(port);
    this.netns.exec("ip", ["link", "set", port, "master", "br0", "up"]);
    netns.exec("ip", ["addr", "add", `${address}/24`, "dev", "eth0"]);
    netns.exec("ip", ["link", "set", "eth0", "up"]);
    return { name, netns, address, ifName: "eth0" };
  }

  namespaces(): string[] {
    return this.made.map((ns) => ns.name);
  }

  /** The bridge ports' names (links made only inside the underlay's namespace). */
  links(): string[] {
    return [...this.ports];
  }

  /** Deletes every namespace (with its links) and the reservation; the processes in them must be gone. */
  remove(): void {
    const errors: unknown[] = [];
    for (const ns of this.made.splice(0).reverse()) {
      try {
        removeNetns(ns);
      } catch (err) {
        errors.push(err);
      }
    }
    rmSync(this.reservation, { force: true });
    if (errors.length) throw errors[0];
  }

  private newNetns(name: string): TestNetns {
    const ns = createNetns(`weftlab-${this.owner.id}-${name}-`);
    this.made.push(ns);
    return ns;
  }
}

/** A reservation file's contents. */
interface Reservation extends LabOwner {
  pid: number;
}

/**
 * Claims a /24 of 172.31.0.0/16 that no other lab on this machine holds, so labs of test files run
 * in parallel never share addresses: a file per /24 under /run, created exclusively. Labs abandoned
 * by a dead test process are swept first.
 */
function reserveSubnet(owner: LabOwner): { path: string; prefix: string } {
  mkdirSync(RESERVATIONS, { recursive: true });
  sweepAbandonedLabs();
  const start = randomInt(1, 255);
  for (let i = 0; i < 254; i++) {
    const third = ((start - 1 + i) % 254) + 1;
    const path = join(RESERVATIONS, `172-31-${third}`);
    try {
      const fd = openSync(path, "wx");
      const reservation: Reservation = { pid: process.pid, id: owner.id, dir: owner.dir };
      writeSync(fd, JSON.stringify(reservation));
      closeSync(fd);
      return { path, prefix: `172.31.${third}` };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
  throw new Error(`underlay: every /24 of 172.31.0.0/16 is reserved (${RESERVATIONS})`);
}

/**
 * vitest ends a worker with SIGTERM, so no exit handler of a test file that failed to remove its lab
 * runs: the lab's processes die with it (they run with a parent-death signal), and its namespaces,
 * temp dir and reservation are removed here, by the next lab made on the machine.
 */
function sweepAbandonedLabs(): void {
  for (const entry of readdirSync(RESERVATIONS)) {
    const path = join(RESERVATIONS, entry);
    let owner: Reservation;
    try {
      owner = JSON.parse(readFileSync(path, "utf8")) as Reservation;
    } catch {
      continue; // being written, or not a lab's
    }
    if (!/^[0-9a-f]{8}$/.test(owner.id) || isAlive(owner.pid)) continue;
    const namespaces = existsSync("/run/netns") ? readdirSync("/run/netns") : [];
    for (const ns of namespaces.filter((name) => name.startsWith(`weftlab-${owner.id}-`))) {
      try {
        removeNetns(ns);
      } catch {
        // Another lab's sweep got there first.
      }
    }
    if (typeof owner.dir === "string" && owner.dir.startsWith(join(tmpdir(), LAB_DIR_PREFIX))) rmSync(owner.dir, { recursive: true, force: true });
    rmSync(path, { force: true });
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}
