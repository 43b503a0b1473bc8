import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, unlinkSync, type Stats } from "node:fs";
import { join } from "node:path";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import { ipToBigInt, parseIp } from "../../lib/ip/ip.js";
import { acquireLock, type HeldLock } from "../../lib/lock/lock.js";
import { syncDirectory, writeFileAtomically, writeNewFile } from "../../lib/files/atomic-write.js";
import { fileType, readSmallFile, type SmallFile } from "../../lib/files/small-file.js";
import { formatAddress, type Address } from "./allocator.js";

// The reference's store (backend/disk), byte for byte: <dataDir>/<network>/ holds one file per
// reserved address, named by the address as Go prints it and holding "<containerID>\r\n<ifname>"
// (only "<containerID>" before plugins v0.8.0); last_reserved_ip.<range set index> holds the
// address that range set handed out last; an empty file "lock" is flock'ed around every change.
// Modes are those of the reference Debian 12 ships (plugins 1.1.1): directories 0755, files 0644,
// the lock file 0750. Plugins v1.4.0 and later write 0600 files; either reads the other's.
export const LOCK_FILE = "lock";
export const LAST_RESERVED_PREFIX = "last_reserved_ip.";
const DIR_MODE = 0o755;
const FILE_MODE = 0o644;
const LOCK_MODE = 0o750;
/** weft writes each file beside its final name first; the name is never an address, so the reference ignores it. */
const TEMP_PREFIX = ".weft-";
/** Larger than any holder's key (a container id of at most 200 bytes, CRLF, an interface name) or address. */
const MAX_RESERVATION_BYTES = 1024;

/** A reserved address and who holds it: the file's content with surrounding space trimmed, as the reference compares it. */
export interface Reservation {
  name: string;
  address: Address;
  owner: string;
}

export interface Owner {
  containerId: string;
  /** Absent in files written before plugins v0.8.0. */
  ifName?: string;
}

/** The content of the file reserving an address for an attachment. */
export function ownerKey(containerId: string, ifName: string): string {
  return `${containerId}\r\n${ifName}`;
}

/** An interface of a container: what a reservation is held for. */
export interface Attachment {
  containerId: string;
  ifName: string;
}

/**
 * The reservations an attachment holds: those with its key; when there are none, those its
 * container holds in files written before plugins v0.8.0, which name no interface. `owned` says
 * whether an owner is the one these were found by.
 */
export function heldBy(all: readonly Reservation[], attachment: Attachment): { held: Reservation[]; owned: (owner: string) => boolean } {
  const key = ownerKey(attachment.containerId, attachment.ifName);
  const current = (owner: string) => owner === key;
  const held = all.filter((r) => current(r.owner));
  if (held.length > 0) return { held, owned: current };
  const legacy = (owner: string) => owner === attachment.containerId;
  return { held: all.filter((r) => legacy(r.owner)), owned: legacy };
}

/** Whether an owner is the attachment, or its container in a file written before plugins v0.8.0. */
export function isOwnerOf(owner: string, attachment: Attachment): boolean {
  return owner === ownerKey(attachment.containerId, attachment.ifName) || owner === attachment.containerId;
}

export function parseOwner(owner: string): Owner | undefined {
  if (owner === "") return undefined;
  const lines = owner.split("\r\n");
  if (lines.length === 1) return { containerId: lines[0]! };
  if (lines.length === 2 && lines[0] !== "" && lines[1] !== "") return { containerId: lines[0]!, ifName: lines[1]! };
  return undefined;
}

const TEMP_NAME = /^\.weft-(\d+)-\d+\.tmp$/;

function isRunning(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function addressOfName(name: string): Address | undefined {
  const ip = parseIp(name);
  return ip && { family: ip.family, value: ipToBigInt(ip) };
}

function ioError(what: string, err: unknown): CniError {
  return new CniError(ErrorCode.IOFailure, `host-local store: ${what}: ${(err as Error).message}`);
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === "ENOENT";
}

/** An owner's record made ready outside the lock, so that reserve() holds the lock only briefly. */
export interface PreparedReservation {
  readonly owner: string;
}

/**
 * A network's reservations: who holds which address, each range set's round-robin cursor, and the
 * lock around changes. DiskStore is the reference's on-disk layout; tests may pass another.
 */
export interface Store {
  /** Where the store lives, for messages. */
  readonly location: string;
  lock(timeoutMs: number): Promise<HeldLock>;
  /** The reserved addresses, whoever holds them. */
  addresses(): Address[];
  /** Every reservation with its holder. */
  reservations(): Reservation[];
  /** Who holds the address named `name`; undefined when nobody (or nobody readable) does. */
  ownerOf(name: string): string | undefined;
  /** A record of the attachment's ownership, ready to reserve addresses with; discard it when done. */
  prepare(attachment: Attachment): PreparedReservation;
  discard(prepared: PreparedReservation): void;
  /** Reserves an address for the prepared owner; false when it is already reserved. */
  reserve(address: Address, prepared: PreparedReservation): boolean;
  /** Removes a reservation if its holder still satisfies `owned`; false when it does not (or is gone). */
  release(name: string, owned: (owner: string) => boolean): boolean;
  /** The address range set `index` handed out last. */
  lastReserved(index: number): Address | undefined;
  setLastReserved(index: number, address: Address): void;
  /** Makes the changes so far durable. */
  sync(): void;
  /** Removes what writers that died left behind; returns what it removed. */
  removeLeftovers(): string[];
}

/** Numbers the temporary files of this process; per process, not per store, as several may be open at once. */
let temporaries = 0;

/** A prepared reservation of DiskStore: a synced file under a temporary name, linked by reserve(). */
export interface PreparedFile extends PreparedReservation {
  readonly path: string;
}

export class DiskStore implements Store {
  private constructor(readonly dir: string) {}

  get location(): string {
    return this.dir;
  }

  /**
   * The network's store, created when `create` is set; undefined when it does not exist (nothing
   * reserved). The dataDir may be a symlink (the operator's), the network's directory may not: a
   * symlink there would make weft lock, reserve and collect garbage in a directory it did not make.
   */
  static open(dataDir: string, network: string, create: boolean): DiskStore | undefined {
    const dir = join(dataDir, network);
    if (create) {
      try {
        mkdirSync(dir, { recursive: true, mode: DIR_MODE });
      } catch (err) {
        throw ioError(`cannot create ${dir}`, err);
      }
    }
    let stats: Stats;
    try {
      stats = lstatSync(dir);
    } catch (err) {
      if (isMissing(err) && !create) return undefined;
      throw ioError(`cannot read ${dir}`, err);
    }
    if (!stats.isDirectory()) {
      throw new CniError(
        ErrorCode.IOFailure,
        `host-local store: ${dir} is ${fileType(stats)}, not a directory`,
        stats.isSymbolicLink()
          ? "a network's directory is never followed through a symlink; link ipam.dataDir itself instead"
          : "remove it, or choose another ipam.dataDir",
      );
    }
    return new DiskStore(dir);
  }

  lock(timeoutMs: number): Promise<HeldLock> {
    return acquireLock(join(this.dir, LOCK_FILE), { timeoutMs, mode: LOCK_MODE });
  }

  private names(): string[] {
    try {
      return readdirSync(this.dir);
    } catch (err) {
      throw ioError(`cannot list ${this.dir}`, err);
    }
  }

  /** The reserved addresses, from the file names alone. */
  addresses(): Address[] {
    const out: Address[] = [];
    for (const name of this.names()) {
      const address = addressOfName(name);
      if (address) out.push(address);
    }
    return out;
  }

  /** Every reservation with its holder. Reads one small file per address: O(reservations). */
  reservations(): Reservation[] {
    const out: Reservation[] = [];
    for (const name of this.names()) {
      const address = addressOfName(name);
      if (!address) continue;
      const owner = this.ownerOf(name);
      if (owner !== undefined) out.push({ name, address, owner });
    }
    return out;
  }

  /**
   * The trimmed content of a reservation file; undefined when it is gone or is no file weft or the
   * reference wrote: a symlink, a directory, a FIFO or a device named like an address, or a file
   * longer than any holder's key. Its name still keeps the address from being handed out.
   */
  ownerOf(name: string): string | undefined {
    const path = join(this.dir, name);
    let file: SmallFile;
    try {
      file = readSmallFile(path, MAX_RESERVATION_BYTES);
    } catch (err) {
      throw ioError(`cannot read ${path}`, err);
    }
    return file.state === "read" ? file.bytes.toString("utf8").trim() : undefined;
  }

  /**
   * Writes and syncs the content of a reservation for an attachment under a temporary name, so
   * that reserve() holds the lock only for a link.
   */
  prepare(attachment: Attachment): PreparedFile {
    const owner = ownerKey(attachment.containerId, attachment.ifName);
    return { owner, path: this.writeTemporary(owner, true) };
  }

  discard(prepared: PreparedReservation): void {
    const { path } = prepared as PreparedFile;
    try {
      unlinkSync(path);
    } catch (err) {
      if (!isMissing(err)) throw ioError(`cannot remove ${path}`, err);
    }
  }

  /**
   * Reserves an address with a prepared file; false when the address is already reserved. The
   * file appears whole or not at all: a hard link to its final name, which fails if that exists
   * (the O_EXCL of the reference, without its window where a crash leaves an empty file). The
   * prepared file can serve the next attempt; it is removed once it succeeded.
   */
  reserve(address: Address, prepared: PreparedReservation): boolean {
    const { path, owner } = prepared as PreparedFile;
    const name = formatAddress(address);
    for (let attempt = 1; ; attempt++) {
      try {
        linkSync(path, join(this.dir, name));
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EEXIST") return false;
        // The reference's DEL removes every file of the directory that holds the attachment's key,
        // this prepared one included, when it runs between preparation and lock (an ADD and a DEL
        // of one attachment racing). Written again: under the lock now, no DEL can take it.
        if (code !== "ENOENT" || attempt > 1 || existsSync(path)) throw ioError(`cannot reserve ${name}`, err);
        this.writeTemporaryAt(path, owner);
      }
    }
    this.discard(prepared);
    return true;
  }

  /** Removes a reservation if its holder still satisfies `owned`; false when it does not (or is gone). */
  release(name: string, owned: (owner: string) => boolean): boolean {
    const owner = this.ownerOf(name);
    if (owner === undefined || !owned(owner)) return false;
    try {
      unlinkSync(join(this.dir, name));
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw ioError(`cannot release ${name}`, err);
    }
  }

  /** The address range set `index` handed out last. Read as Go's net.ParseIP reads it: no trimming. */
  lastReserved(index: number): Address | undefined {
    try {
      const file = readSmallFile(join(this.dir, `${LAST_RESERVED_PREFIX}${index}`), MAX_RESERVATION_BYTES);
      return file.state === "read" ? addressOfName(file.bytes.toString("utf8")) : undefined;
    } catch {
      // Missing or unreadable: round-robin starts over at the first range, as in the reference.
      return undefined;
    }
  }

  /**
   * Replaced by rename, so no reader sees half an address. Not synced: after a power loss an old,
   * empty or missing cursor only restarts the round-robin at the first range, as the reference
   * does for any address it cannot parse, and it saves an fsync on every ADD.
   */
  setLastReserved(index: number, address: Address): void {
    const name = `${LAST_RESERVED_PREFIX}${index}`;
    try {
      writeFileAtomically(join(this.dir, name), formatAddress(address), { mode: FILE_MODE, temporary: this.temporaryName(), durable: false });
    } catch (err) {
      throw ioError(`cannot write ${name}`, err);
    }
  }

  /** Makes the names created, renamed and removed so far durable. */
  sync(): void {
    try {
      syncDirectory(this.dir);
    } catch (err) {
      throw ioError(`cannot sync ${this.dir}`, err);
    }
  }

  /** Removes the temporary files of weft processes that died before renaming or discarding them. */
  removeLeftovers(): string[] {
    const removed: string[] = [];
    for (const name of this.names()) {
      const writer = TEMP_NAME.exec(name);
      if (!writer || isRunning(Number(writer[1]))) continue;
      try {
        unlinkSync(join(this.dir, name));
        removed.push(name);
      } catch (err) {
        if (!isMissing(err)) throw ioError(`cannot remove ${name}`, err);
      }
    }
    return removed;
  }

  private temporaryName(): string {
    return join(this.dir, `${TEMP_PREFIX}${process.pid}-${temporaries++}.tmp`);
  }

  private writeTemporary(content: string, durable: boolean): string {
    const path = this.temporaryName();
    this.writeTemporaryAt(path, content, durable);
    return path;
  }

  private writeTemporaryAt(path: string, content: string, durable = true): void {
    try {
      writeNewFile(path, content, { mode: FILE_MODE, fsync: durable });
    } catch (err) {
      throw ioError(`cannot write ${path}`, err);
    }
  }
}
