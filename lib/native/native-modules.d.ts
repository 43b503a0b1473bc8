/** A native addon embedded in the bundle by scripts/build.mjs (or the vitest config). */
declare module "weft-native:*" {
  export const name: string;
  export const sha256: string;
  export function bytes(): Uint8Array;
}
