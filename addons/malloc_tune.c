/*
 * One function, keepFreedMemory(bytes): glibc's M_TRIM_THRESHOLD, set at run time (the environment
 * variable MALLOC_TRIM_THRESHOLD_ works only from process start, and Node cannot re-exec itself).
 *
 * Every socket read, SSH packet and WebSocket frame of a tunnel is a fresh 64 KiB buffer from malloc.
 * When the garbage collector frees a batch of them, glibc returns the top of the heap to the kernel
 * as soon as more than 128 KiB is free, and the next buffers fault their pages in again: on a VM a page
 * fault costs more than the copy that touches it, and a tunnel at full speed spent about half of rportd's
 * CPU there. Keeping up to `bytes` of freed heap avoids that. Returns true when set, false when not (not glibc).
 *
 * releaseFreedMemory(): malloc_trim(0), what glibc would have given back; for a process gone quiet, so
 * an idle server or client does not hold the kept heap. Returns true when memory was released.
 */
#include <node_api.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static napi_value KeepFreedMemory(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value result;
  int64_t bytes = 0;
  int ok = 0;

  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int64(env, argv[0], &bytes) != napi_ok || bytes < 0 || bytes > (1 << 30)) {
    napi_throw_type_error(env, NULL, "keepFreedMemory(bytes: number between 0 and 1 GiB)");
    return NULL;
  }
#ifdef __GLIBC__
  ok = mallopt(M_TRIM_THRESHOLD, (int)bytes);
#endif
  napi_get_boolean(env, ok == 1, &result);
  return result;
}

static napi_value ReleaseFreedMemory(napi_env env, napi_callback_info info) {
  napi_value result;
  int released = 0;
#ifdef __GLIBC__
  released = malloc_trim(0);
#endif
  napi_get_boolean(env, released == 1, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "keepFreedMemory", NAPI_AUTO_LENGTH, KeepFreedMemory, NULL, &fn);
  napi_set_named_property(env, exports, "keepFreedMemory", fn);
  napi_create_function(env, "releaseFreedMemory", NAPI_AUTO_LENGTH, ReleaseFreedMemory, NULL, &fn);
  napi_set_named_property(env, exports, "releaseFreedMemory", fn);
  return exports;
}
