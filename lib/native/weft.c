// weft's own native code: the few system calls Node.js does not expose.
//   setns(fd, nstype)        enter the namespace behind fd on the calling (main) thread
//   flock(fd, op)            flock(2), op = LOCK_SH | LOCK_EX | LOCK_UN, optionally | LOCK_NB
//   flockAsync(fd, op)       the same on a worker thread (N-API async work), as a promise, so a blocking wait
//                            never stalls the event loop (and a caller can time it out)
//   pollFd(fd, events)       poll(2) one descriptor until it is ready (POLLIN 1, POLLOUT 4) or hung
//                            up: how a plugin handed a non-blocking stdin or stdout waits for it
//   netlinkSocket(protocol)  a netlink socket (fd) in the calling thread's network namespace
//   netlinkJoin(fd, group)   joins a multicast group (RTNLGRP_*) on it
//   wakeFd()                 an eventfd: a write to it ends a netlinkReceive waiting on it
//   netlinkReceive(fd, wake, timeoutMs)  on a worker thread (N-API async work), waits (at most timeoutMs) for
//                            notifications and resolves with all that are queued (empty when the
//                            time ran out, null when woken); rejects ENOBUFS when the kernel dropped
//                            some because the socket's buffer was full. Bounded, because Node's exit
//                            waits for the worker threads.
//   netlinkRequest(fd, msg)  sends one netlink message and reads every reply up to the one that ends
//                            it (NLMSG_ERROR or NLMSG_DONE with its sequence number), on a libuv
//                            worker thread, as a promise of the replies' bytes: the kernel carries out
//                            some requests inside the send itself, slowly (deleting a veth pair waits
//                            out RCU grace periods), and the event loop stays free meanwhile
//   tunOpen(name)            opens /dev/net/tun non-blocking and attaches a TUN device (IFF_TUN,
//                            IFF_NO_PI: bare IP packets) of that name ("flannel%d": the kernel picks
//                            the number) in the calling thread's network namespace: { fd, name }
//   udpOpen(address, port)   a non-blocking IPv4 UDP socket bound to address:port in the calling
//                            thread's namespace, its buffers 4 MiB (forced, as root may): its fd
//   carrierReceive(tunFd, udpFd, wake, timeoutMs, maxBytes)  on a worker thread (N-API async work), waits (at most
//                            timeoutMs) until the TUN or the socket has something, then reads both in
//                            turn until neither has more or about maxBytes are read; each packet or
//                            datagram behind an 8-byte header: u16 length (little endian), u8 kind (0
//                            from the TUN, 1 from the socket), u8 0, the datagram's source address (4
//                            bytes, network order; 0 for the TUN). Empty when the time ran out, null
//                            when woken; rejects when the TUN cannot be read (EBADFD: deleted). One
//                            worker thread carries both directions, as flanneld's proxy polls both
//   udpSendBatch(fd, batch)  sends records (u16 length little endian, u16 port and u32 address in
//                            network order, the bytes) with sendmmsg, on the calling thread without
//                            blocking: how many went (the rest found the socket's buffer full)
//   tunWriteBatch(fd, batch) writes records (the same header, port and address unused) to a TUN fd
//                            without blocking, one packet each: how many it took
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <node_api.h>

/**
 * The symbolic name of an errno value, as Node's errors carry it in .code ("ENOENT"). Not libuv's
 * uv_err_name: the addon calls N-API only, so it loads under any runtime that implements N-API.
 * EOPNOTSUPP is ENOTSUP on Linux and EWOULDBLOCK is EAGAIN: one name each, as libuv gives.
 */
static const char *errno_name(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case ENOEXEC: return "ENOEXEC";
    case EBADF: return "EBADF";
    case ECHILD: return "ECHILD";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case ENOTBLK: return "ENOTBLK";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case ETXTBSY: return "ETXTBSY";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case ESPIPE: return "ESPIPE";
    case EROFS: return "EROFS";
    case EMLINK: return "EMLINK";
    case EPIPE: return "EPIPE";
    case EDOM: return "EDOM";
    case ERANGE: return "ERANGE";
    case EDEADLK: return "EDEADLK";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOLCK: return "ENOLCK";
    case ENOSYS: return "ENOSYS";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ELOOP: return "ELOOP";
    case ENOMSG: return "ENOMSG";
    case EIDRM: return "EIDRM";
    case ECHRNG: return "ECHRNG";
    case EL2NSYNC: return "EL2NSYNC";
    case EL3HLT: return "EL3HLT";
    case EL3RST: return "EL3RST";
    case ELNRNG: return "ELNRNG";
    case EUNATCH: return "EUNATCH";
    case ENOCSI: return "ENOCSI";
    case EL2HLT: return "EL2HLT";
    case EBADE: return "EBADE";
    case EBADR: return "EBADR";
    case EXFULL: return "EXFULL";
    case ENOANO: return "ENOANO";
    case EBADRQC: return "EBADRQC";
    case EBADSLT: return "EBADSLT";
    case EBFONT: return "EBFONT";
    case ENOSTR: return "ENOSTR";
    case ENODATA: return "ENODATA";
    case ETIME: return "ETIME";
    case ENOSR: return "ENOSR";
    case ENONET: return "ENONET";
    case ENOPKG: return "ENOPKG";
    case EREMOTE: return "EREMOTE";
    case ENOLINK: return "ENOLINK";
    case EADV: return "EADV";
    case ESRMNT: return "ESRMNT";
    case ECOMM: return "ECOMM";
    case EPROTO: return "EPROTO";
    case EMULTIHOP: return "EMULTIHOP";
    case EDOTDOT: return "EDOTDOT";
    case EBADMSG: return "EBADMSG";
    case EOVERFLOW: return "EOVERFLOW";
    case ENOTUNIQ: return "ENOTUNIQ";
    case EBADFD: return "EBADFD";
    case EREMCHG: return "EREMCHG";
    case ELIBACC: return "ELIBACC";
    case ELIBBAD: return "ELIBBAD";
    case ELIBSCN: return "ELIBSCN";
    case ELIBMAX: return "ELIBMAX";
    case ELIBEXEC: return "ELIBEXEC";
    case EILSEQ: return "EILSEQ";
    case ERESTART: return "ERESTART";
    case ESTRPIPE: return "ESTRPIPE";
    case EUSERS: return "EUSERS";
    case ENOTSOCK: return "ENOTSOCK";
    case EDESTADDRREQ: return "EDESTADDRREQ";
    case EMSGSIZE: return "EMSGSIZE";
    case EPROTOTYPE: return "EPROTOTYPE";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
    case ENOTSUP: return "ENOTSUP";
    case EPFNOSUPPORT: return "EPFNOSUPPORT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENETDOWN: return "ENETDOWN";
    case ENETUNREACH: return "ENETUNREACH";
    case ENETRESET: return "ENETRESET";
    case ECONNABORTED: return "ECONNABORTED";
    case ECONNRESET: return "ECONNRESET";
    case ENOBUFS: return "ENOBUFS";
    case EISCONN: return "EISCONN";
    case ENOTCONN: return "ENOTCONN";
    case ESHUTDOWN: return "ESHUTDOWN";
    case ETOOMANYREFS: return "ETOOMANYREFS";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EHOSTDOWN: return "EHOSTDOWN";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case EALREADY: return "EALREADY";
    case EINPROGRESS: return "EINPROGRESS";
    case ESTALE: return "ESTALE";
    case EUCLEAN: return "EUCLEAN";
    case ENOTNAM: return "ENOTNAM";
    case ENAVAIL: return "ENAVAIL";
    case EISNAM: return "EISNAM";
    case EREMOTEIO: return "EREMOTEIO";
    case EDQUOT: return "EDQUOT";
    case ENOMEDIUM: return "ENOMEDIUM";
    case EMEDIUMTYPE: return "EMEDIUMTYPE";
    case ECANCELED: return "ECANCELED";
    case ENOKEY: return "ENOKEY";
    case EKEYEXPIRED: return "EKEYEXPIRED";
    case EKEYREVOKED: return "EKEYREVOKED";
    case EKEYREJECTED: return "EKEYREJECTED";
    case EOWNERDEAD: return "EOWNERDEAD";
    case ENOTRECOVERABLE: return "ENOTRECOVERABLE";
    case ERFKILL: return "ERFKILL";
    case EHWPOISON: return "EHWPOISON";
    default: return NULL;
  }
}

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  char msg[160], unknown[40];
  const char *code = errno_name(err);
  if (code == NULL) {
    snprintf(unknown, sizeof unknown, "Unknown system error %d", -err);
    code = unknown;
  }
  snprintf(msg, sizeof msg, "%s: %s", syscall, strerror(err));
  napi_value error, errno_value, syscall_value, code_value, message;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value);
  napi_create_error(env, code_value, message, &error);
  napi_create_int32(env, err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  napi_throw(env, error);
  return NULL;
}

/** Rejects the promise of deferred with the error throw_errno makes. */
static void reject_errno(napi_env env, napi_deferred deferred, int err, const char *syscall) {
  throw_errno(env, err, syscall);
  napi_value exception;
  napi_get_and_clear_last_exception(env, &exception);
  napi_reject_deferred(env, deferred, exception);
}

/** Runs execute on a worker thread (N-API async work) and complete back on the main thread: the promise complete settles. */
static napi_value queue_job(napi_env env, const char *name, napi_async_execute_callback execute, napi_async_complete_callback complete,
                            void *job, napi_deferred *deferred, napi_async_work *work) {
  napi_value promise, resource_name;
  napi_create_promise(env, deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  napi_create_async_work(env, NULL, resource_name, execute, complete, job, work);
  napi_queue_async_work(env, *work);
  return promise;
}

static int int_args(napi_env env, napi_callback_info info, int32_t *out, size_t count) {
  napi_value argv[4];
  size_t argc = 4;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < count) {
    napi_throw_type_error(env, NULL, "expected integer arguments");
    return 0;
  }
  for (size_t i = 0; i < count; i++) {
    if (napi_get_value_int32(env, argv[i], &out[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "expected integer arguments");
      return 0;
    }
  }
  return 1;
}

static napi_value Setns(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (!int_args(env, info, a, 2)) return NULL;
  if (setns(a[0], a[1]) != 0) return throw_errno(env, errno, "setns");
  return NULL;
}

static napi_value Flock(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (!int_args(env, info, a, 2)) return NULL;
  int rc;
  do {
    rc = flock(a[0], a[1]);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return throw_errno(env, errno, "flock");
  return NULL;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int op;
  int err;
} flock_job;

static void flock_execute(napi_env env, void *data) {
  (void)env;
  flock_job *job = data;
  int rc;
  do {
    rc = flock(job->fd, job->op);
  } while (rc != 0 && errno == EINTR);
  job->err = rc == 0 ? 0 : errno;
}

static void flock_complete(napi_env env, napi_status status, void *data) {
  flock_job *job = data;
  if (status == napi_ok && job->err == 0) {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, job->deferred, undefined);
  } else {
    reject_errno(env, job->deferred, job->err ? job->err : ECANCELED, "flock");
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value FlockAsync(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (!int_args(env, info, a, 2)) return NULL;
  flock_job *job = calloc(1, sizeof *job);
  if (!job) return throw_errno(env, ENOMEM, "flock");
  job->fd = a[0];
  job->op = a[1];
  return queue_job(env, "weft.flock", flock_execute, flock_complete, job, &job->deferred, &job->work);
}

static napi_value PollFd(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (!int_args(env, info, a, 2)) return NULL;
  struct pollfd p = {.fd = a[0], .events = (short)a[1]};
  int rc;
  do {
    rc = poll(&p, 1, -1);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return throw_errno(env, errno, "poll");
  napi_value result;
  napi_create_int32(env, p.revents, &result);
  return result;
}

static napi_value NetlinkSocket(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (!int_args(env, info, a, 1)) return NULL;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, a[0]);
  if (fd < 0) return throw_errno(env, errno, "socket");
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  // The kernel answers within microseconds or, for the slow requests, milliseconds: a minute
  // without an answer means it never comes, and the worker thread must not wait forever.
  struct timeval timeout = {.tv_sec = 60};
  const char *failed = bind(fd, (struct sockaddr *)&local, sizeof local) != 0 ? "bind"
                       : setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0 ? "setsockopt"
                       : NULL;
  if (failed) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, failed);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  char *request;
  size_t request_length;
  char *reply;
  size_t reply_length;
  int err;
  const char *syscall;
} netlink_job;

/** Replies above this size are refused rather than buffered (a dump of a huge table). */
#define NETLINK_REPLY_LIMIT (64u << 20)

/**
 * Appends the next datagram of fd to *data, grown as needed so that nothing is ever truncated: 1
 * when one was read, 0 when none was waiting (with MSG_DONTWAIT in flags), -1 with errno otherwise.
 */
static int recv_append(int fd, int flags, char **data, size_t *length, size_t *capacity) {
  ssize_t n;
  do {
    n = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC | flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return (flags & MSG_DONTWAIT) && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
  if (*length + (size_t)n > NETLINK_REPLY_LIMIT) {
    errno = ENOBUFS;
    return -1;
  }
  if (*length + (size_t)n > *capacity) {
    size_t wanted = *capacity ? *capacity : 65536;
    while (wanted < *length + (size_t)n) wanted *= 2;
    char *grown = realloc(*data, wanted);
    if (!grown) {
      errno = ENOMEM;
      return -1;
    }
    *data = grown;
    *capacity = wanted;
  }
  do {
    n = recv(fd, *data + *length, *capacity - *length, flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return (flags & MSG_DONTWAIT) && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
  *length += (size_t)n;
  return 1;
}

static void netlink_execute(napi_env env, void *data) {
  (void)env;
  netlink_job *job = data;
  const struct nlmsghdr *sent = (const struct nlmsghdr *)job->request;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t n;
  do {
    n = sendto(job->fd, job->request, job->request_length, 0, (struct sockaddr *)&kernel, sizeof kernel);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    job->err = errno;
    job->syscall = "sendto";
    return;
  }
  size_t capacity = 0;
  for (int done = 0; !done;) {
    size_t start = job->reply_length;
    if (recv_append(job->fd, 0, &job->reply, &job->reply_length, &capacity) < 0) {
      job->err = errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno;
      job->syscall = "recv";
      return;
    }
    const char *chunk = job->reply + start;
    size_t received = job->reply_length - start;
    for (size_t off = 0; off + sizeof(struct nlmsghdr) <= received;) {
      const struct nlmsghdr *h = (const struct nlmsghdr *)(chunk + off);
      if (h->nlmsg_len < sizeof(struct nlmsghdr) || off + h->nlmsg_len > received) break;
      if (h->nlmsg_seq == sent->nlmsg_seq && (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE)) done = 1;
      off += NLMSG_ALIGN(h->nlmsg_len);
    }
  }
}

static void netlink_complete(napi_env env, napi_status status, void *data) {
  netlink_job *job = data;
  if (status == napi_ok && job->err == 0) {
    napi_value buffer;
    napi_create_buffer_copy(env, job->reply_length, job->reply ? job->reply : "", NULL, &buffer);
    napi_resolve_deferred(env, job->deferred, buffer);
  } else {
    reject_errno(env, job->deferred, job->err ? job->err : ECANCELED, job->syscall ? job->syscall : "netlink");
  }
  napi_delete_async_work(env, job->work);
  free(job->request);
  free(job->reply);
  free(job);
}

static napi_value NetlinkRequest(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  int32_t fd;
  void *bytes;
  size_t length;
  bool is_buffer = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[1], &bytes, &length) != napi_ok || length < sizeof(struct nlmsghdr)) {
    napi_throw_type_error(env, NULL, "expected a socket fd and a netlink message");
    return NULL;
  }
  netlink_job *job = calloc(1, sizeof *job);
  if (!job || !(job->request = malloc(length))) {
    free(job);
    return throw_errno(env, ENOMEM, "netlink");
  }
  memcpy(job->request, bytes, length);
  job->request_length = length;
  job->fd = fd;
  return queue_job(env, "weft.netlink", netlink_execute, netlink_complete, job, &job->deferred, &job->work);
}

static napi_value NetlinkJoin(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (!int_args(env, info, a, 2)) return NULL;
  int group = a[1];
  if (setsockopt(a[0], SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0) return throw_errno(env, errno, "setsockopt");
  return NULL;
}

static napi_value WakeFd(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return throw_errno(env, errno, "eventfd");
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int wake_fd;
  int timeout_ms;
  int woken;
  char *data;
  size_t length;
  int err;
} receive_job;

static void receive_execute(napi_env env, void *data) {
  (void)env;
  receive_job *job = data;
  struct pollfd fds[2] = {{.fd = job->fd, .events = POLLIN}, {.fd = job->wake_fd, .events = POLLIN}};
  int rc;
  do {
    rc = poll(fds, 2, job->timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    job->err = errno;
    return;
  }
  if (fds[1].revents) {
    job->woken = 1;
    return;
  }
  size_t capacity = 0;
  for (;;) {
    int got = recv_append(job->fd, MSG_DONTWAIT, &job->data, &job->length, &capacity);
    if (got < 0) job->err = errno;
    if (got <= 0) return;
  }
}

static void receive_complete(napi_env env, napi_status status, void *data) {
  receive_job *job = data;
  if (status == napi_ok && job->err == 0) {
    napi_value value;
    if (job->woken) napi_get_null(env, &value);
    else napi_create_buffer_copy(env, job->length, job->data ? job->data : "", NULL, &value);
    napi_resolve_deferred(env, job->deferred, value);
  } else {
    reject_errno(env, job->deferred, job->err ? job->err : ECANCELED, "recv");
  }
  napi_delete_async_work(env, job->work);
  free(job->data);
  free(job);
}

static napi_value NetlinkReceive(napi_env env, napi_callback_info info) {
  int32_t a[3];
  if (!int_args(env, info, a, 3)) return NULL;
  receive_job *job = calloc(1, sizeof *job);
  if (!job) return throw_errno(env, ENOMEM, "recv");
  job->fd = a[0];
  job->wake_fd = a[1];
  job->timeout_ms = a[2];
  return queue_job(env, "weft.netlinkReceive", receive_execute, receive_complete, job, &job->deferred, &job->work);
}

static napi_value TunOpen(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  size_t length = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], ifr.ifr_name, IFNAMSIZ, &length) != napi_ok || length == 0 || length >= IFNAMSIZ - 1) {
    napi_throw_type_error(env, NULL, "expected a device name of 1 to 14 characters");
    return NULL;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open /dev/net/tun");
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "ioctl TUNSETIFF");
  }
  napi_value result, fd_value, name_value;
  napi_create_object(env, &result);
  napi_create_int32(env, fd, &fd_value);
  napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &name_value);
  napi_set_named_property(env, result, "fd", fd_value);
  napi_set_named_property(env, result, "name", name_value);
  return result;
}

static napi_value UdpOpen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  char address[64];
  size_t length = 0;
  int32_t port;
  struct sockaddr_in local = {.sin_family = AF_INET};
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], address, sizeof address, &length) != napi_ok || napi_get_value_int32(env, argv[1], &port) != napi_ok ||
      port < 0 || port > 65535 || inet_pton(AF_INET, address, &local.sin_addr) != 1) {
    napi_throw_type_error(env, NULL, "expected an IPv4 address and a port");
    return NULL;
  }
  local.sin_port = htons((uint16_t)port);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  int size = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  if (bind(fd, (struct sockaddr *)&local, sizeof local) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "bind");
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

#define CARRIER_HEADER 8
/** The largest UDP payload over IPv4, and more than any TUN packet: a read into this much is never cut short. */
#define CARRIER_READ_MAX 65535

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int tun_fd;
  int udp_fd;
  int wake_fd;
  int timeout_ms;
  size_t max_bytes;
  int woken;
  char *data;
  size_t length;
  int err;
} carrier_job;

static void put_header(char *at, size_t length, uint8_t kind, const void *address) {
  at[0] = (char)(length & 0xff);
  at[1] = (char)((length >> 8) & 0xff);
  at[2] = (char)kind;
  at[3] = 0;
  if (address) memcpy(at + 4, address, 4);
  else memset(at + 4, 0, 4);
}

static void carrier_receive_execute(napi_env env, void *data) {
  (void)env;
  carrier_job *job = data;
  struct pollfd fds[3] = {{.fd = job->tun_fd, .events = POLLIN}, {.fd = job->udp_fd, .events = POLLIN}, {.fd = job->wake_fd, .events = POLLIN}};
  int rc;
  do {
    rc = poll(fds, 3, job->timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    job->err = errno;
    return;
  }
  if (fds[2].revents) {
    job->woken = 1;
    return;
  }
  if (rc == 0) return;
  job->data = malloc(job->max_bytes + CARRIER_HEADER + CARRIER_READ_MAX);
  if (!job->data) {
    job->err = ENOMEM;
    return;
  }
  int tun_done = 0, udp_done = 0;
  while (job->length < job->max_bytes && !(tun_done && udp_done)) {
    if (!tun_done) {
      char *slot = job->data + job->length;
      ssize_t n;
      do {
        n = read(job->tun_fd, slot + CARRIER_HEADER, CARRIER_READ_MAX);
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        tun_done = 1;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          job->err = errno;
          return;
        }
      } else {
        put_header(slot, (size_t)n, 0, NULL);
        job->length += CARRIER_HEADER + (size_t)n;
      }
    }
    if (!udp_done && job->length < job->max_bytes) {
      char *slot = job->data + job->length;
      struct sockaddr_in from;
      socklen_t from_length = sizeof from;
      ssize_t n;
      do {
        n = recvfrom(job->udp_fd, slot + CARRIER_HEADER, CARRIER_READ_MAX, 0, (struct sockaddr *)&from, &from_length);
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        // EAGAIN: nothing more; anything else (an ICMP error queued on the socket) only ends this batch.
        udp_done = 1;
      } else {
        put_header(slot, (size_t)n, 1, &from.sin_addr);
        job->length += CARRIER_HEADER + (size_t)n;
      }
    }
  }
}

static void carrier_receive_complete(napi_env env, napi_status status, void *data) {
  carrier_job *job = data;
  if (status == napi_ok && job->err == 0) {
    napi_value value;
    if (job->woken) {
      napi_get_null(env, &value);
    } else if (job->length == 0) {
      napi_create_buffer(env, 0, NULL, &value);
    } else {
      napi_create_buffer_copy(env, job->length, job->data, NULL, &value);
    }
    napi_resolve_deferred(env, job->deferred, value);
  } else {
    reject_errno(env, job->deferred, job->err ? job->err : ECANCELED, "read");
  }
  napi_delete_async_work(env, job->work);
  free(job->data);
  free(job);
}

static napi_value CarrierReceive(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  size_t argc = 5;
  int32_t a[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) {
    napi_throw_type_error(env, NULL, "expected integer arguments");
    return NULL;
  }
  for (int i = 0; i < 5; i++) {
    if (napi_get_value_int32(env, argv[i], &a[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "expected integer arguments");
      return NULL;
    }
  }
  if (a[4] < 1 || a[4] > (64 << 20)) {
    napi_throw_range_error(env, NULL, "maxBytes must be between 1 and 64 MiB");
    return NULL;
  }
  carrier_job *job = calloc(1, sizeof *job);
  if (!job) return throw_errno(env, ENOMEM, "read");
  job->tun_fd = a[0];
  job->udp_fd = a[1];
  job->wake_fd = a[2];
  job->timeout_ms = a[3];
  job->max_bytes = (size_t)a[4];
  return queue_job(env, "weft.carrierReceive", carrier_receive_execute, carrier_receive_complete, job, &job->deferred, &job->work);
}

/** The fd and the records' bytes of a batch call. */
static int batch_args(napi_env env, napi_callback_info info, int32_t *fd, char **bytes, size_t *length) {
  napi_value argv[2];
  size_t argc = 2;
  bool is_buffer = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_int32(env, argv[0], fd) != napi_ok ||
      napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer || napi_get_buffer_info(env, argv[1], (void **)bytes, length) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected an fd and a buffer of records");
    return 0;
  }
  return 1;
}

#define SEND_CHUNK 64

static napi_value UdpSendBatch(napi_env env, napi_callback_info info) {
  int32_t fd;
  char *bytes;
  size_t length;
  if (!batch_args(env, info, &fd, &bytes, &length)) return NULL;
  struct mmsghdr msgs[SEND_CHUNK];
  struct iovec iovs[SEND_CHUNK];
  struct sockaddr_in to[SEND_CHUNK];
  int32_t sent = 0;
  size_t offset = 0;
  while (offset + CARRIER_HEADER <= length) {
    unsigned count = 0;
    while (count < SEND_CHUNK && offset + CARRIER_HEADER <= length) {
      const unsigned char *h = (const unsigned char *)bytes + offset;
      size_t n = (size_t)h[0] | ((size_t)h[1] << 8);
      if (offset + CARRIER_HEADER + n > length) break;
      memset(&to[count], 0, sizeof to[count]);
      to[count].sin_family = AF_INET;
      memcpy(&to[count].sin_port, h + 2, 2);
      memcpy(&to[count].sin_addr, h + 4, 4);
      iovs[count].iov_base = bytes + offset + CARRIER_HEADER;
      iovs[count].iov_len = n;
      memset(&msgs[count], 0, sizeof msgs[count]);
      msgs[count].msg_hdr.msg_name = &to[count];
      msgs[count].msg_hdr.msg_namelen = sizeof to[count];
      msgs[count].msg_hdr.msg_iov = &iovs[count];
      msgs[count].msg_hdr.msg_iovlen = 1;
      count++;
      offset += CARRIER_HEADER + n;
    }
    if (count == 0) break;
    unsigned done = 0;
    while (done < count) {
      int rc = sendmmsg(fd, msgs + done, count - done, MSG_DONTWAIT);
      if (rc < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) goto out;
        // One datagram refused (no route to its node): skipped, the others still go.
        done++;
        continue;
      }
      done += (unsigned)rc;
      sent += rc;
    }
  }
out:;
  napi_value result;
  napi_create_int32(env, sent, &result);
  return result;
}

static napi_value TunWriteBatch(napi_env env, napi_callback_info info) {
  int32_t fd;
  char *bytes;
  size_t length;
  if (!batch_args(env, info, &fd, &bytes, &length)) return NULL;
  int32_t written = 0;
  for (size_t offset = 0; offset + CARRIER_HEADER <= length;) {
    const unsigned char *h = (const unsigned char *)bytes + offset;
    size_t n = (size_t)h[0] | ((size_t)h[1] << 8);
    if (offset + CARRIER_HEADER + n > length) break;
    ssize_t rc;
    do {
      rc = write(fd, bytes + offset + CARRIER_HEADER, n);
    } while (rc < 0 && errno == EINTR);
    if (rc == (ssize_t)n) written++;
    offset += CARRIER_HEADER + n;
  }
  napi_value result;
  napi_create_int32(env, written, &result);
  return result;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"setns", NULL, Setns, NULL, NULL, NULL, napi_enumerable, NULL},
    {"flock", NULL, Flock, NULL, NULL, NULL, napi_enumerable, NULL},
    {"flockAsync", NULL, FlockAsync, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pollFd", NULL, PollFd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"netlinkSocket", NULL, NetlinkSocket, NULL, NULL, NULL, napi_enumerable, NULL},
    {"netlinkRequest", NULL, NetlinkRequest, NULL, NULL, NULL, napi_enumerable, NULL},
    {"netlinkJoin", NULL, NetlinkJoin, NULL, NULL, NULL, napi_enumerable, NULL},
    {"wakeFd", NULL, WakeFd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"netlinkReceive", NULL, NetlinkReceive, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tunOpen", NULL, TunOpen, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpOpen", NULL, UdpOpen, NULL, NULL, NULL, napi_enumerable, NULL},
    {"carrierReceive", NULL, CarrierReceive, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpSendBatch", NULL, UdpSendBatch, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tunWriteBatch", NULL, TunWriteBatch, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
