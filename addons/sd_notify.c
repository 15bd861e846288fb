/*
 * One function, send(address, payload): a single AF_UNIX datagram, as libsystemd's sd_notify sends it.
 * Node has no AF_UNIX datagram sockets, and unix-dgram cannot address abstract names: it copies the
 * path with strncpy and always passes sizeof(struct sockaddr_un), so "@name" never matches the
 * exact-length abstract address systemd binds. Here "@name" becomes "\0name" with its exact length.
 * Returns 0 or a negative errno; never blocks (MSG_DONTWAIT), so a stuck receiver cannot stall the caller.
 */
#include <node_api.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static napi_value Send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value result;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  size_t path_len = 0;
  void *data = NULL;
  size_t data_len = 0;
  struct sockaddr_un addr;
  socklen_t addr_len;
  int fd, rc = 0;

  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &path_len) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &data, &data_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "send(address: string, payload: Buffer)");
    return NULL;
  }
  if (path_len == 0 || path_len >= sizeof(addr.sun_path)) {
    napi_create_int32(env, -ENAMETOOLONG, &result);
    return result;
  }
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, path_len);
  if (path[0] == '@') {
    addr.sun_path[0] = '\0';
    addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
  } else {
    addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len + 1);
  }
  fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    rc = -errno;
  } else {
    if (sendto(fd, data, data_len, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&addr, addr_len) < 0)
      rc = -errno;
    close(fd);
  }
  napi_create_int32(env, rc, &result);
  return result;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "send", NAPI_AUTO_LENGTH, Send, NULL, &fn);
  napi_set_named_property(env, exports, "send", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
