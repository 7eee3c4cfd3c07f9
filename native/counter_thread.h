// The packet counters' reader thread (counter_thread.c), registered by packet_stats.c.
#ifndef COUNTER_THREAD_H
#define COUNTER_THREAD_H

#include <node_api.h>

// Implemented in packet_stats.c: the ifindex an fd of ours was bound to, or -1 if not ours.
int packet_stats_fd_ifindex(void *state, int fd);

napi_value js_counters_start(napi_env env, napi_callback_info info);
napi_value js_counters_buffer(napi_env env, napi_callback_info info);
napi_value js_counters_watch(napi_env env, napi_callback_info info);
napi_value js_counters_kick(napi_env env, napi_callback_info info);
napi_value js_counters_wait(napi_env env, napi_callback_info info);
napi_value js_counters_realtime(napi_env env, napi_callback_info info);
napi_value js_counters_stop(napi_env env, napi_callback_info info);

#endif
