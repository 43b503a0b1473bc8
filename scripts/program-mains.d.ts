/** Made by scripts/standalone.mjs from plugins/registry.ts: each program's main module by type, imported lazily. */
declare module "weft-programs:mains" {
  export const MAINS: Readonly<Record<string, () => Promise<unknown>>>;
}
