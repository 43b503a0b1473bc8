/**
 * lib/node/hashes.ts for the executable Bun compiles (scripts/standalone.mjs puts this module in its
 * place): Bun's own native hasher, which costs no module load, where @noble/hashes computes its
 * tables at every start.
 */
interface BunHasher {
  update(data: string): BunHasher;
  digest(encoding: "hex"): string;
}
declare const Bun: { CryptoHasher: new (algorithm: "sha256" | "sha512") => BunHasher };

export function sha256Hex(text: string): string {
  return new Bun.CryptoHasher("sha256").update(text).digest("hex");
}

export function sha512Hex(text: string): string {
  return new Bun.CryptoHasher("sha512").update(text).digest("hex");
}
