import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

export interface V2Probe {
  endpoints: readonly string[];
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  timeoutMs?: number;
}

/**
 * The network config as etcd's v2 store holds it, when it is there: flanneld before 0.10 wrote and
 * read the v2 API, whose keys the v3 API does not see (etcd keeps two stores). Asked of each endpoint
 * in turn; undefined when no endpoint has it (or none serves v2).
 */
export async function findV2Config(key: string, probe: V2Probe): Promise<string | undefined> {
  for (const endpoint of probe.endpoints) {
    const value = await getV2Key(endpoint, key, probe).catch(() => undefined);
    if (value !== undefined) return value;
  }
  return undefined;
}

function getV2Key(endpoint: string, key: string, probe: V2Probe): Promise<string | undefined> {
  const url = new URL(`/v2/keys${key}`, endpoint);
  const secure = url.protocol === "https:";
  return new Promise((resolve, reject) => {
    const req = (secure ? httpsRequest : httpRequest)(
      url,
      { timeout: probe.timeoutMs ?? 2000, ...(secure ? { ca: probe.tls?.ca, cert: probe.tls?.cert, key: probe.tls?.key } : {}) },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (body.length < 1 << 20) body += chunk;
        });
        res.on("end", () => {
          if (res.statusCode !== 200) return resolve(undefined);
          try {
            const value = (JSON.parse(body) as { node?: { value?: unknown } }).node?.value;
            resolve(typeof value === "string" ? value : undefined);
          } catch {
            resolve(undefined);
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end();
  });
}

/** What the operator is to do with a config found only in the v2 store. */
export function v2MigrationMessage(key: string): string {
  return (
    `the network config ${key} is in etcd's v2 store only (written by an old flanneld or etcdctl with ETCDCTL_API=2); ` +
    `flanneld since 0.10 and weft read etcd's v3 API: copy it with ` +
    `ETCDCTL_API=3 etcdctl put ${key} "$(ETCDCTL_API=2 etcdctl get ${key})" (or migrate the whole store with etcdctl migrate)`
  );
}
