/**
 * The part of etcd v3 API (etcd-io/etcd api/etcdserverpb/rpc.proto and api/mvccpb/kv.proto, Apache-2.0)
 * that weft uses, as a protobufjs JSON descriptor: embedded, so a bundle reads no .proto file and
 * does not parse one at start-up.
 */
export const etcdRpcDescriptor = {
  nested: {
    etcdserverpb: {
      nested: {
        KV: {
          methods: {
            Range: { requestType: "RangeRequest", responseType: "RangeResponse" },
            Put: { requestType: "PutRequest", responseType: "PutResponse" },
            Txn: { requestType: "TxnRequest", responseType: "TxnResponse" },
          },
        },
        Watch: { methods: { Watch: { requestType: "WatchRequest", responseType: "WatchResponse", requestStream: true, responseStream: true } } },
        Lease: {
          methods: {
            LeaseGrant: { requestType: "LeaseGrantRequest", responseType: "LeaseGrantResponse" },
            LeaseRevoke: { requestType: "LeaseRevokeRequest", responseType: "LeaseRevokeResponse" },
            LeaseKeepAlive: {
              requestType: "LeaseKeepAliveRequest",
              responseType: "LeaseKeepAliveResponse",
              requestStream: true,
              responseStream: true,
            },
            LeaseTimeToLive: { requestType: "LeaseTimeToLiveRequest", responseType: "LeaseTimeToLiveResponse" },
          },
        },
        Auth: { methods: { Authenticate: { requestType: "AuthenticateRequest", responseType: "AuthenticateResponse" } } },
        RangeRequest: {
          fields: {
            key: { type: "bytes", id: 1 },
            range_end: { type: "bytes", id: 2 },
            limit: { type: "int64", id: 3 },
            revision: { type: "int64", id: 4 },
            sort_order: { type: "SortOrder", id: 5 },
            sort_target: { type: "SortTarget", id: 6 },
            serializable: { type: "bool", id: 7 },
            keys_only: { type: "bool", id: 8 },
            count_only: { type: "bool", id: 9 },
            min_mod_revision: { type: "int64", id: 10 },
            max_mod_revision: { type: "int64", id: 11 },
            min_create_revision: { type: "int64", id: 12 },
            max_create_revision: { type: "int64", id: 13 },
          },
          nested: {
            SortOrder: { values: { NONE: 0, ASCEND: 1, DESCEND: 2 } },
            SortTarget: { values: { KEY: 0, VERSION: 1, CREATE: 2, MOD: 3, VALUE: 4 } },
          },
        },
        RangeResponse: {
          fields: {
            header: { type: "ResponseHeader", id: 1 },
            kvs: { rule: "repeated", type: "mvccpb.KeyValue", id: 2 },
            more: { type: "bool", id: 3 },
            count: { type: "int64", id: 4 },
          },
        },
        ResponseHeader: {
          fields: {
            cluster_id: { type: "uint64", id: 1 },
            member_id: { type: "uint64", id: 2 },
            revision: { type: "int64", id: 3 },
            raft_term: { type: "uint64", id: 4 },
          },
        },
        PutRequest: {
          fields: {
            key: { type: "bytes", id: 1 },
            value: { type: "bytes", id: 2 },
            lease: { type: "int64", id: 3 },
            prev_kv: { type: "bool", id: 4 },
            ignore_value: { type: "bool", id: 5 },
            ignore_lease: { type: "bool", id: 6 },
          },
        },
        PutResponse: { fields: { header: { type: "ResponseHeader", id: 1 }, prev_kv: { type: "mvccpb.KeyValue", id: 2 } } },
        TxnRequest: {
          fields: {
            compare: { rule: "repeated", type: "Compare", id: 1 },
            success: { rule: "repeated", type: "RequestOp", id: 2 },
            failure: { rule: "repeated", type: "RequestOp", id: 3 },
          },
        },
        Compare: {
          oneofs: { target_union: { oneof: ["version", "create_revision", "mod_revision", "value", "lease"] } },
          fields: {
            result: { type: "CompareResult", id: 1 },
            target: { type: "CompareTarget", id: 2 },
            key: { type: "bytes", id: 3 },
            version: { type: "int64", id: 4 },
            create_revision: { type: "int64", id: 5 },
            mod_revision: { type: "int64", id: 6 },
            value: { type: "bytes", id: 7 },
            lease: { type: "int64", id: 8 },
            range_end: { type: "bytes", id: 64 },
          },
          nested: {
            CompareResult: { values: { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } },
            CompareTarget: { values: { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } },
          },
        },
        RequestOp: {
          oneofs: { request: { oneof: ["request_range", "request_put", "request_delete_range", "request_txn"] } },
          fields: {
            request_range: { type: "RangeRequest", id: 1 },
            request_put: { type: "PutRequest", id: 2 },
            request_delete_range: { type: "DeleteRangeRequest", id: 3 },
            request_txn: { type: "TxnRequest", id: 4 },
          },
        },
        DeleteRangeRequest: { fields: { key: { type: "bytes", id: 1 }, range_end: { type: "bytes", id: 2 }, prev_kv: { type: "bool", id: 3 } } },
        TxnResponse: {
          fields: {
            header: { type: "ResponseHeader", id: 1 },
            succeeded: { type: "bool", id: 2 },
            responses: { rule: "repeated", type: "ResponseOp", id: 3 },
          },
        },
        ResponseOp: {
          oneofs: { response: { oneof: ["response_range", "response_put", "response_delete_range", "response_txn"] } },
          fields: {
            response_range: { type: "RangeResponse", id: 1 },
            response_put: { type: "PutResponse", id: 2 },
            response_delete_range: { type: "DeleteRangeResponse", id: 3 },
            response_txn: { type: "TxnResponse", id: 4 },
          },
        },
        DeleteRangeResponse: {
          fields: {
            header: { type: "ResponseHeader", id: 1 },
            deleted: { type: "int64", id: 2 },
            prev_kvs: { rule: "repeated", type: "mvccpb.KeyValue", id: 3 },
          },
        },
        WatchRequest: {
          oneofs: { request_union: { oneof: ["create_request", "cancel_request", "progress_request"] } },
          fields: {
            create_request: { type: "WatchCreateRequest", id: 1 },
            cancel_request: { type: "WatchCancelRequest", id: 2 },
            progress_request: { type: "WatchProgressRequest", id: 3 },
          },
        },
        WatchCreateRequest: {
          fields: {
            key: { type: "bytes", id: 1 },
            range_end: { type: "bytes", id: 2 },
            start_revision: { type: "int64", id: 3 },
            progress_notify: { type: "bool", id: 4 },
            filters: { rule: "repeated", type: "FilterType", id: 5 },
            prev_kv: { type: "bool", id: 6 },
            watch_id: { type: "int64", id: 7 },
            fragment: { type: "bool", id: 8 },
          },
          nested: { FilterType: { values: { NOPUT: 0, NODELETE: 1 } } },
        },
        WatchCancelRequest: { fields: { watch_id: { type: "int64", id: 1 } } },
        WatchProgressRequest: { fields: {} },
        WatchResponse: {
          fields: {
            header: { type: "ResponseHeader", id: 1 },
            watch_id: { type: "int64", id: 2 },
            created: { type: "bool", id: 3 },
            canceled: { type: "bool", id: 4 },
            compact_revision: { type: "int64", id: 5 },
            cancel_reason: { type: "string", id: 6 },
            fragment: { type: "bool", id: 7 },
            events: { rule: "repeated", type: "mvccpb.Event", id: 11 },
          },
        },
        LeaseGrantRequest: { fields: { TTL: { type: "int64", id: 1 }, ID: { type: "int64", id: 2 } } },
        LeaseGrantResponse: {
          fields: {
            header: { type: "ResponseHeader", id: 1 },
            ID: { type: "int64", id: 2 },
            TTL: { type: "int64", id: 3 },
            error: { type: "string", id: 4 },
          },
        },
        LeaseRevokeRequest: { fields: { ID: { type: "int64", id: 1 } } },
        LeaseRevokeResponse: { fields: { header: { type: "ResponseHeader", id: 1 } } },
        LeaseKeepAliveRequest: { fields: { ID: { type: "int64", id: 1 } } },
        LeaseKeepAliveResponse: {
          fields: { header: { type: "ResponseHeader", id: 1 }, ID: { type: "int64", id: 2 }, TTL: { type: "int64", id: 3 } },
        },
        LeaseTimeToLiveRequest: { fields: { ID: { type: "int64", id: 1 }, keys: { type: "bool", id: 2 } } },
        LeaseTimeToLiveResponse: {
          fields: {
            header: { type: "ResponseHeader", id: 1 },
            ID: { type: "int64", id: 2 },
            TTL: { type: "int64", id: 3 },
            grantedTTL: { type: "int64", id: 4 },
            keys: { rule: "repeated", type: "bytes", id: 5 },
          },
        },
        AuthenticateRequest: { fields: { name: { type: "string", id: 1 }, password: { type: "string", id: 2 } } },
        AuthenticateResponse: { fields: { header: { type: "ResponseHeader", id: 1 }, token: { type: "string", id: 2 } } },
      },
    },
    mvccpb: {
      nested: {
        KeyValue: {
          fields: {
            key: { type: "bytes", id: 1 },
            create_revision: { type: "int64", id: 2 },
            mod_revision: { type: "int64", id: 3 },
            version: { type: "int64", id: 4 },
            value: { type: "bytes", id: 5 },
            lease: { type: "int64", id: 6 },
          },
        },
        Event: {
          fields: { type: { type: "EventType", id: 1 }, kv: { type: "KeyValue", id: 2 }, prev_kv: { type: "KeyValue", id: 3 } },
          nested: { EventType: { values: { PUT: 0, DELETE: 1 } } },
        },
      },
    },
  },
};
