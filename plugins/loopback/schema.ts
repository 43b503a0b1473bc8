/** loopback reads no keys of its own: it always works on lo (the reference ignores CNI_IFNAME too). */
export const loopbackConfigSchema = {
  $id: "loopback",
  allOf: [{ $ref: "netconf" }],
} as const;
