// weft's own native code: the few system calls Node.js does not expose.
//   setns(fd, nstype)        enter the namespace behind fd on the calling (main) thread
//   flock(fd, op)            flock(2), op = LOCK_SH | LOCK_EX | LOCK_UN, optionally | LOCK_NB
//   flockAsync(fd, op)       the same on a libuv worker thread, as a promise, so a blocking wait
//                            never stalls the event loop (and a caller can time it out)
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <node_api.h>
#include <uv.h>

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  char msg[160];
  const char *code = uv_err_name(-err);
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
    throw_errno(env, job->err ? job->err : ECANCELED, "flock");
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    napi_reject_deferred(env, job->deferred, exception);
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
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "weft.flock", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, flock_execute, flock_complete, job, &job->work);
  // The worker must not keep the process alive once the caller gave up waiting.
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"setns", NULL, Setns, NULL, NULL, NULL, napi_enumerable, NULL},
    {"flock", NULL, Flock, NULL, NULL, NULL, napi_enumerable, NULL},
    {"flockAsync", NULL, FlockAsync, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
