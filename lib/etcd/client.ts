import { isIP } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { fromJSON } from "@grpc/proto-loader";
import { etcdRpcDescriptor } from "./rpc-descriptor.js";

export interface EtcdClientOptions {
  /** `http://host:port` or `https://host:port`, as flanneld's --etcd-endpoints; all with one scheme. */
  endpoints: readonly string[];
  /** PEM bytes; with https endpoints. The CA alone verifies the server, cert and key add a client certificate. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  auth?: { username: string; password: string };
  /** Deadline of every unary call and of a keep-alive's answer (default 5 s). */
  timeoutMs?: number;
  /**
   * HTTP/2 ping interval (default 30 s; etcd refuses pings more often than every 5 s): a connection
   * whose ping is not answered within the timeout below is dropped, and its streams reopened.
   */
  pingMs?: number;
  /** How long a ping may go unanswered (default 10 s). */
  pingTimeoutMs?: number;
}

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** The etcd lease holding the key, in decimal ("0": none). */
  lease: string;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** The store's revision the range was read at. */
  revision: number;
}

export type WatchEvent =
  | { type: "put"; kv: KeyValue }
  | { type: "delete"; kv: KeyValue }
  /** The start revision was compacted: nothing more comes on this watch; re-list and watch anew. */
  | { type: "compacted"; compactRevision: number }
  /** The stream broke and is being reopened from the revision after the last event seen. */
  | { type: "reconnecting"; error: EtcdError }
  /** etcd accepted the watch (at the start, and again after each reconnection). */
  | { type: "watching" };

export interface Watch {
  close(): void;
}

export interface LeaseKeepAlive {
  /** Renews the lease once over the open stream; resolves to its new TTL in seconds. */
  renew(): Promise<number>;
  close(): void;
}

/** A failed etcd call: `code` is the gRPC status, `compacted` etcd's ErrCompacted. */
export class EtcdError extends Error {
  constructor(
    message: string,
    readonly code: grpc.status,
    readonly compacted = false,
  ) {
    super(message);
    this.name = "EtcdError";
  }
}

const COMPACTED = "mvcc: required revision has been compacted";
const INVALID_TOKEN = "etcdserver: invalid auth token";

interface RawKeyValue {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease: string;
}
interface RawHeader {
  revision: string;
}
interface RawWatchResponse {
  header: RawHeader;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  events: { type: "PUT" | "DELETE"; kv: RawKeyValue }[];
}

type Callback = (error: grpc.ServiceError | null, response: unknown) => void;
type UnaryMethod = (request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, callback: Callback) => void;
type StreamMethod = (metadata: grpc.Metadata) => grpc.ClientDuplexStream<unknown, unknown>;
type ServiceClient = grpc.Client & Record<string, UnaryMethod | StreamMethod>;

const definition = grpc.loadPackageDefinition(
  fromJSON(etcdRpcDescriptor as Parameters<typeof fromJSON>[0], { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }),
) as unknown as { etcdserverpb: Record<string, grpc.ServiceClientConstructor> };

function keyValue(raw: RawKeyValue): KeyValue {
  return {
    key: raw.key.toString(),
    value: raw.value.toString(),
    createRevision: Number(raw.create_revision),
    modRevision: Number(raw.mod_revision),
    version: Number(raw.version),
    lease: raw.lease,
  };
}

/** The key right after every key that starts with `prefix`: the range_end of a prefix range. */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** One gRPC target for all endpoints: pick_first goes on to the next address when one fails. */
function target(endpoints: readonly string[]): { target: string; secure: boolean } {
  if (endpoints.length === 0) throw new Error("etcd: no endpoint given");
  const urls = endpoints.map((e) => {
    let url: URL;
    try {
      url = new URL(e);
    } catch {
      throw new Error(`etcd: endpoint ${JSON.stringify(e)} is not a URL (http://host:port or https://host:port)`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`etcd: endpoint ${JSON.stringify(e)} is neither http nor https`);
    return url;
  });
  const secure = urls[0]!.protocol === "https:";
  if (urls.some((u) => (u.protocol === "https:") !== secure)) throw new Error("etcd: endpoints mix http and https");
  const hosts = urls.map((u) => `${u.hostname}:${u.port || 2379}`);
  const allV4 = urls.every((u) => /^\d+\.\d+\.\d+\.\d+$/.test(u.hostname));
  const allV6 = urls.every((u) => u.hostname.startsWith("["));
  if (allV4) return { target: `ipv4:${hosts.join(",")}`, secure };
  if (allV6) return { target: `ipv6:${hosts.join(",")}`, secure };
  if (urls.length > 1) throw new Error("etcd: several endpoints must all be IPv4 or all IPv6 addresses; give one host name alone");
  return { target: `dns:${hosts[0]}`, secure };
}

/** What grpc-js's secure connector holds: the options it hands tls.connect. */
interface SecureConnector {
  connectionOptions?: { servername?: string };
}

/**
 * TLS credentials that send no server name (SNI) to an endpoint given by IP address, as Go's etcd
 * client does. grpc-js sends the endpoint's host whatever it is, which RFC 6066 forbids for an
 * address: Node.js warns (DEP0123) and Bun refuses the connection. The certificate is still checked
 * against the address (tls.connect falls back to the host). grpc-js 1.14's connector keeps its
 * tls.connect options in `connectionOptions`; the TLS tests fail if that changes.
 */
function withoutIpServerName(credentials: grpc.ChannelCredentials): grpc.ChannelCredentials {
  const internal = credentials as unknown as { _createSecureConnector: (...args: unknown[]) => SecureConnector };
  const create = internal._createSecureConnector.bind(credentials);
  internal._createSecureConnector = (...args: unknown[]) => {
    const connector = create(...args);
    const servername = connector.connectionOptions?.servername;
    if (servername !== undefined && isIP(servername) !== 0) delete connector.connectionOptions!.servername;
    return connector;
  };
  return credentials;
}

/**
 * A small etcd v3 client over @grpc/grpc-js: the operations flannel's subnet manager needs, each a
 * Promise with a deadline. Lease ids are decimal strings (int64), revisions numbers.
 */
export class EtcdClient {
  private readonly channel: grpc.Channel;
  private readonly kv: ServiceClient;
  private readonly lease: ServiceClient;
  private readonly watcher: ServiceClient;
  private readonly authService: ServiceClient;
  private readonly timeoutMs: number;
  private token: Promise<string> | undefined;
  private closed = false;

  constructor(private readonly options: EtcdClientOptions) {
    const { target: address, secure } = target(options.endpoints);
    const credentials = secure
      ? withoutIpServerName(grpc.credentials.createSsl(options.tls?.ca ?? null, options.tls?.key ?? null, options.tls?.cert ?? null))
      : grpc.credentials.createInsecure();
    this.channel = new grpc.Channel(address, credentials, {
      "grpc.keepalive_time_ms": options.pingMs ?? 30_000,
      "grpc.keepalive_timeout_ms": options.pingTimeoutMs ?? 10_000,
    });
    const make = (service: string) => new definition.etcdserverpb[service]!(address, credentials, { channelOverride: this.channel }) as ServiceClient;
    this.kv = make("KV");
    this.lease = make("Lease");
    this.watcher = make("Watch");
    this.authService = make("Auth");
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  async range(key: string, options: { prefix?: boolean; revision?: number } = {}): Promise<RangeResult> {
    const response = (await this.unary(this.kv, "Range", `range ${key}`, {
      key: Buffer.from(key),
      // etcd tells an absent range_end (one key) from a present empty one (every key from key on).
      ...(options.prefix ? { range_end: prefixEnd(key) } : {}),
      revision: String(options.revision ?? 0),
    })) as { header: RawHeader; kvs: RawKeyValue[] };
    return { kvs: response.kvs.map(keyValue), revision: Number(response.header.revision) };
  }

  /** Resolves to the revision of the write. */
  async put(key: string, value: string, options: { lease?: string } = {}): Promise<number> {
    const response = (await this.unary(this.kv, "Put", `put ${key}`, {
      key: Buffer.from(key),
      value: Buffer.from(value),
      lease: options.lease ?? "0",
    })) as { header: RawHeader };
    return Number(response.header.revision);
  }

  /** Writes the key only when it does not exist (its create revision is 0), in one transaction. */
  async createIfAbsent(key: string, value: string, options: { lease?: string } = {}): Promise<{ created: boolean; revision: number }> {
    const response = (await this.unary(this.kv, "Txn", `create ${key}`, {
      compare: [{ key: Buffer.from(key), target: "CREATE", result: "EQUAL", create_revision: "0" }],
      success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(value), lease: options.lease ?? "0" } }],
      failure: [],
    })) as { header: RawHeader; succeeded: boolean };
    return { created: response.succeeded, revision: Number(response.header.revision) };
  }

  /**
   * Deletes the key only when it is still as it was read (its mod revision), in one transaction:
   * a key another writer changed meanwhile is left alone. Resolves to whether it was deleted.
   */
  async deleteIfUnchanged(key: string, modRevision: number): Promise<boolean> {
    const response = (await this.unary(this.kv, "Txn", `delete ${key}`, {
      compare: [{ key: Buffer.from(key), target: "MOD", result: "EQUAL", mod_revision: String(modRevision) }],
      success: [{ request_delete_range: { key: Buffer.from(key) } }],
      failure: [],
    })) as { succeeded: boolean };
    return response.succeeded;
  }

  /** Resolves to the new lease's id and the TTL etcd granted. */
  async leaseGrant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const response = (await this.unary(this.lease, "LeaseGrant", "grant a lease", { TTL: String(ttlSeconds), ID: "0" })) as {
      ID: string;
      TTL: string;
      error: string;
    };
    if (response.error) throw new EtcdError(`etcd: grant a lease: ${response.error}`, grpc.status.UNKNOWN);
    return { id: response.ID, ttl: Number(response.TTL) };
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.unary(this.lease, "LeaseRevoke", `revoke lease ${id}`, { ID: id });
  }

  /** `ttl` is -1 when the lease does not exist (expired or revoked). */
  async leaseTimeToLive(id: string): Promise<{ ttl: number; grantedTtl: number }> {
    const response = (await this.unary(this.lease, "LeaseTimeToLive", `time to live of lease ${id}`, { ID: id, keys: false })) as {
      TTL: string;
      grantedTTL: string;
    };
    return { ttl: Number(response.TTL), grantedTtl: Number(response.grantedTTL) };
  }

  /**
   * A keep-alive stream for one lease, opened on the first renew and reopened after a failure.
   * A renewal of a lease that no longer exists rejects (etcd answers TTL 0).
   */
  leaseKeepAlive(id: string): LeaseKeepAlive {
    let stream: grpc.ClientDuplexStream<unknown, unknown> | undefined;
    let pending: { resolve: (ttl: number) => void; reject: (error: Error) => void } | undefined;
    let closed = false;
    const fail = (error: Error) => {
      stream = undefined;
      pending?.reject(error);
      pending = undefined;
    };
    const open = async () => {
      const s = this.watcherOrLeaseStream(this.lease, "LeaseKeepAlive", await this.metadata());
      s.on("data", (response: { TTL: string }) => {
        const ttl = Number(response.TTL);
        if (ttl <= 0) pending?.reject(new EtcdError(`etcd: renew lease ${id}: lease not found`, grpc.status.NOT_FOUND));
        else pending?.resolve(ttl);
        pending = undefined;
      });
      s.on("error", (error: grpc.ServiceError) => {
        if (stream === s) fail(this.error(`renew lease ${id}`, error));
      });
      s.on("end", () => {
        if (stream === s) fail(new EtcdError(`etcd: renew lease ${id}: stream ended`, grpc.status.UNAVAILABLE));
      });
      return s;
    };
    return {
      renew: async () => {
        if (closed) throw new Error(`etcd: renew lease ${id}: keep-alive closed`);
        if (pending) throw new Error(`etcd: renew lease ${id}: a renewal is already waiting`);
        stream ??= await open();
        const s = stream;
        return new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => {
            pending = undefined;
            if (stream === s) stream = undefined;
            s.cancel();
            reject(new EtcdError(`etcd: renew lease ${id}: no answer within ${this.timeoutMs} ms`, grpc.status.DEADLINE_EXCEEDED));
          }, this.timeoutMs);
          pending = {
            resolve: (ttl) => (clearTimeout(timer), resolve(ttl)),
            reject: (error) => (clearTimeout(timer), reject(error)),
          };
          s.write({ ID: id });
        });
      },
      close: () => {
        closed = true;
        const s = stream;
        stream = undefined;
        s?.cancel();
        fail(new Error(`etcd: renew lease ${id}: keep-alive closed`));
      },
    };
  }

  /**
   * Watches every key under `prefix` from `startRevision` on, requiring a leader. A broken stream is
   * reopened after a backoff (100 ms doubling to 5 s) from the revision after the last event seen;
   * a compacted start revision ends the watch with a "compacted" event.
   */
  watchPrefix(prefix: string, startRevision: number, onEvent: (event: WatchEvent) => void): Watch {
    let next = startRevision;
    let stream: grpc.ClientDuplexStream<unknown, unknown> | undefined;
    let timer: NodeJS.Timeout | undefined;
    let backoffMs = 100;
    let stopped = false;
    const stop = () => {
      stopped = true;
      clearTimeout(timer);
      const s = stream;
      stream = undefined;
      s?.cancel();
    };
    const retry = (error: EtcdError) => {
      if (stopped) return;
      stream = undefined;
      onEvent({ type: "reconnecting", error });
      timer = setTimeout(() => void open(), backoffMs);
      backoffMs = Math.min(backoffMs * 2, 5000);
    };
    const open = async () => {
      let metadata: grpc.Metadata;
      try {
        metadata = await this.metadata();
      } catch (error) {
        retry(error instanceof EtcdError ? error : new EtcdError(String(error), grpc.status.UNKNOWN));
        return;
      }
      if (stopped || this.closed) return;
      metadata.set("hasleader", "true");
      const s = this.watcherOrLeaseStream(this.watcher, "Watch", metadata);
      stream = s;
      s.on("data", (response: RawWatchResponse) => {
        if (stream !== s) return;
        if (response.compact_revision !== "0") {
          stop();
          onEvent({ type: "compacted", compactRevision: Number(response.compact_revision) });
          return;
        }
        if (response.canceled) {
          s.cancel();
          // etcd refuses a watch's expired token in the cancellation's reason, not as a gRPC status.
          if (response.cancel_reason.endsWith(INVALID_TOKEN)) this.token = undefined;
          retry(new EtcdError(`etcd: watch ${prefix}: canceled: ${response.cancel_reason}`, grpc.status.CANCELLED));
          return;
        }
        if (response.created) {
          backoffMs = 100;
          onEvent({ type: "watching" });
          if (stopped) return;
        }
        // A progress notification: every event up to its revision has been sent, so a reopened
        // watch starts after it rather than at a revision compaction may have passed meanwhile.
        else if (response.events.length === 0) next = Math.max(next, Number(response.header.revision) + 1);
        for (const event of response.events) {
          const kv = keyValue(event.kv);
          next = kv.modRevision + 1;
          onEvent({ type: event.type === "PUT" ? "put" : "delete", kv });
          if (stopped) return;
        }
      });
      s.on("error", (error: grpc.ServiceError) => {
        if (stream === s) retry(this.error(`watch ${prefix}`, error));
      });
      s.on("end", () => {
        if (stream === s) retry(new EtcdError(`etcd: watch ${prefix}: stream ended`, grpc.status.UNAVAILABLE));
      });
      s.write({
        create_request: {
          key: Buffer.from(prefix),
          range_end: prefixEnd(prefix),
          start_revision: String(next),
          progress_notify: true,
          prev_kv: false,
        },
      });
    };
    void open();
    return { close: stop };
  }

  close(): void {
    this.closed = true;
    for (const client of [this.kv, this.lease, this.watcher, this.authService]) client.close();
    this.channel.close();
  }

  private async metadata(): Promise<grpc.Metadata> {
    const metadata = new grpc.Metadata();
    if (this.options.auth) metadata.set("token", await this.authToken());
    return metadata;
  }

  private authToken(): Promise<string> {
    const auth = this.options.auth!;
    this.token ??= this.call(
      this.authService,
      "Authenticate",
      `authenticate as ${auth.username}`,
      { name: auth.username, password: auth.password },
      new grpc.Metadata(),
    )
      .then((response) => (response as { token: string }).token)
      .catch((error: unknown) => {
        this.token = undefined;
        throw error;
      });
    return this.token;
  }

  private watcherOrLeaseStream(client: ServiceClient, method: string, metadata: grpc.Metadata): grpc.ClientDuplexStream<unknown, unknown> {
    if (this.closed) throw new Error("etcd: client closed");
    return (client[method] as StreamMethod).call(client, metadata);
  }

  /** A unary call with the auth token; an expired token is renewed once. */
  private async unary(client: ServiceClient, method: string, action: string, request: unknown): Promise<unknown> {
    try {
      return await this.call(client, method, action, request, await this.metadata());
    } catch (error) {
      if (!(this.options.auth && error instanceof EtcdError && error.message.endsWith(INVALID_TOKEN))) throw error;
      return this.call(client, method, action, request, await this.metadata());
    }
  }

  private call(client: ServiceClient, method: string, action: string, request: unknown, metadata: grpc.Metadata): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error("etcd: client closed"));
    return new Promise((resolve, reject) => {
      (client[method] as UnaryMethod).call(client, request, metadata, { deadline: Date.now() + this.timeoutMs }, (error, response) =>
        error ? reject(this.error(action, error)) : resolve(response),
      );
    });
  }

  private error(action: string, error: grpc.ServiceError): EtcdError {
    // etcd's simple tokens expire (5 minutes by default): the next call authenticates again.
    if (error.details?.endsWith(INVALID_TOKEN)) this.token = undefined;
    return new EtcdError(`etcd: ${action}: ${error.details || error.message}`, error.code, (error.details ?? "").includes(COMPACTED));
  }
}
