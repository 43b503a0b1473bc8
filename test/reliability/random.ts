/**
 * A small seeded generator for the reliability suite: the same seed gives the same cases on any
 * machine, so a failure printed by CI ("seed 0x5eed, case 137") is reproduced with
 * WEFT_FUZZ_SEED=0x5eed. mulberry32: 32 bits of state, good enough to pick among mutations.
 */
export class Random {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** [0, 1) */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(entries: ReadonlyArray<readonly [number, T]>): T {
    const total = entries.reduce((sum, [w]) => sum + w, 0);
    let r = this.next() * total;
    for (const [w, v] of entries) {
      r -= w;
      if (r < 0) return v;
    }
    return entries[entries.length - 1]![1];
  }

  /** A new generator whose sequence depends only on this seed and the label (one stream per plugin). */
  fork(label: string): Random {
    let h = this.seed ^ 0x9e3779b9;
    for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193);
    return new Random(h >>> 0);
  }
}

/** WEFT_FUZZ_SEED (decimal, 0x hex, or "random"), else a fixed default so CI runs are repeatable. */
export function seedFromEnv(fallback = 0x5eed_c0de): number {
  const raw = process.env.WEFT_FUZZ_SEED;
  if (!raw) return fallback;
  if (raw === "random") return (Math.random() * 2 ** 32) >>> 0;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new Error(`WEFT_FUZZ_SEED=${raw} is not an integer`);
  return n >>> 0;
}

export function hex(seed: number): string {
  return `0x${seed.toString(16)}`;
}

/**
 * Names a runtime or an attacker might pass where weft expects a container id, an interface name or
 * a network name. Each must be refused (code 4 or 7) before it becomes a path, a netlink attribute
 * or a command argument. The marker lets a trace of the plugin's system calls be searched for them.
 */
export const HOSTILE_MARKER = "HSTL";

export function hostileNames(): string[] {
  const m = HOSTILE_MARKER;
  return [
    `${m}/x`,
    `../${m}`,
    `${m}/../../etc/passwd`,
    "..",
    ".",
    `/${m}`,
    `${m}\u0000tail`,
    `\u0000${m}`,
    `${m}\nsecond`,
    `${m}\r\neth0`,
    `${m}\ttab`,
    `${m} space`,
    `${m}$(touch /tmp/pwned)`,
    `${m}\`id\``,
    `${m};rm -rf /`,
    `${m}|cat`,
    `${m}&&true`,
    `${m}>out`,
    `${m}'quote`,
    `${m}"dq`,
    `${m}*glob`,
    `-${m}`,
    `${m}:colon`,
    `${m}%s%n`,
    `${m}\u00e9`,
    `${m}\u202e`,
    `${m}\u00a0nbsp`,
    `${m}${"a".repeat(4000)}`,
    `${m}${"/..".repeat(1300)}`,
    `${m}\u007f`,
    `${m}${"\u0001"}`,
    "",
  ];
}

/** Strings of every awkward kind, for values whose type is right but whose content is not. */
export function awkwardString(r: Random): string {
  return r.pick([
    "",
    " ",
    "\u0000",
    "null",
    "0",
    "-1",
    "true",
    "10.0.0.0/33",
    "10.0.0.1/24",
    "::/129",
    "300.1.1.1",
    "1.2.3.4/-1",
    "fe80::%eth0",
    "a".repeat(r.pick([16, 256, 4096, 100_000])),
    "\u{1f600}",
    "\ud800",
    "$(reboot)",
    "../../../../etc/shadow",
    "%00",
    "cni0",
    "eth0",
    r.pick(hostileNames()),
  ]);
}
