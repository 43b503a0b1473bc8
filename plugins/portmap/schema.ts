export const portmapConfigSchema = {
  $id: "portmap",
  allOf: [{ $ref: "netconf" }],
} as const;
