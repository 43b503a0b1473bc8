export const flannelConfigSchema = {
  $id: "flannel",
  allOf: [{ $ref: "netconf" }],
} as const;
