export const hostLocalConfigSchema = {
  $id: "host-local",
  allOf: [{ $ref: "netconf" }],
} as const;
