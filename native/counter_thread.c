// counter_thread: the packet counters' reads, off the JS thread.
//
// Why: packet_getsockopt(PACKET_STATISTICS) takes the receive queue's lock with spin_lock_bh;
// the matching spin_unlock_bh -> __local_bh_enable_ip runs the CPU's pending NET_RX softirq in
// the calling thread. During a storm that softirq is the storm itself (br_flood over the loop),
// so a read that costs ~0.5 us at rest took 3-15 ms in storm ticks (perf on the lab: 155 of 203
// samples inside packet_getsockopt were net_rx_action under __local_bh_enable_ip). The verdict
// tick paid for forwarding the storm. Here a dedicated thread does the reads when the tick asks
// (kick) and publishes, per socket, the running total and the monotonic time of the read into
// memory JS reads without a syscall; the tick waits for that sweep only a bounded time.
//
// Shared memory (an ArrayBuffer JS keeps), one 32-byte slot per socket:
//   int32[0] seq     odd while the slot is written (a seqlock: one writer, this thread)
//   int32[1] err     0, or the errno of a failed read (ENODEV: interface deleted or moved)
//   f64[1]   total   frames matched since the socket was opened
//   f64[2]   readNs  CLOCK_MONOTONIC (libuv's hrtime clock) just BEFORE the getsockopt: the
//                    kernel snapshots the statistics under the lock, at the start of the call;
//                    the slow part (the softirq) comes after, on the unlock.
// A reader loads seq, the fields, seq again, and retries if seq was odd or changed.
//
// API (agent/sources/packet.ts): countersStart(slots) -> handle; countersBuffer(h) -> ArrayBuffer;
// countersWatch(h, slot, fd) (fd -1: forget the slot; returns once no sweep reads the old fd);
// countersKick(h) -> sweep id; countersWait(h, id, maxUs) -> done?; countersRealtime(h, prio);
// countersStop(h).

#include "counter_thread.h"

#include <errno.h>
#include <linux/if_packet.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif

#define SLOT_I32 8  // 32 bytes per slot

typedef struct {
  int fd;        // -1: free
  int ifindex;   // the interface the socket was bound to at open
  uint64_t total;
  int err;
} entry_t;

typedef struct {
  pthread_t thread;
  pid_t tid;
  int running;
  uint32_t slots;
  entry_t *entries;
  int32_t *shm;            // the ArrayBuffer's memory (V8 never moves it)
  napi_ref buffer_ref;     // keeps that ArrayBuffer alive while the thread writes
  // Sweep requests: `wanted` bumps on each kick, `done` is the last id swept (both under mu).
  pthread_mutex_t mu;
  pthread_cond_t kick_cv;
  pthread_cond_t done_cv;
  uint64_t wanted, done;
  int stop;
  // Held for a whole sweep: countersWatch takes it, so an fd is never read after JS forgot it.
  pthread_mutex_t table;
} counters_t;

static double mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

// Seqlock write of one slot; the only writer is the thread holding `table`.
static void publish(counters_t *c, uint32_t i, uint64_t total, double read_ns, int err) {
  int32_t *p = c->shm + (size_t)i * SLOT_I32;
  double *d = (double *)p;
  int32_t seq = __atomic_load_n(&p[0], __ATOMIC_RELAXED);
  __atomic_store_n(&p[0], seq + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  p[1] = err;
  d[1] = (double)total;
  d[2] = read_ns;
  __atomic_store_n(&p[0], seq + 2, __ATOMIC_RELEASE);
}

// One read, as js_read does: clear-on-read statistics summed into the running total; a socket
// whose interface was deleted stops counting, so its binding is checked when nothing arrived.
static void read_entry(counters_t *c, uint32_t i) {
  entry_t *e = &c->entries[i];
  if (e->err) return;  // stays failed until JS reopens the port
  struct tpacket_stats st;
  socklen_t len = sizeof st;
  double t = mono_ns();
  if (getsockopt(e->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) < 0) {
    e->err = errno;
  } else {
    e->total += st.tp_packets;  // tp_packets already includes tp_drops
    if (st.tp_packets == 0) {
      struct sockaddr_ll sll;
      socklen_t sl = sizeof sll;
      if (getsockname(e->fd, (struct sockaddr *)&sll, &sl) < 0) e->err = errno;
      else if (sll.sll_ifindex != e->ifindex) e->err = ENODEV;
    }
  }
  publish(c, i, e->total, t, e->err);
}

static void *counters_main(void *arg) {
  counters_t *c = arg;
  __atomic_store_n(&c->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (!c->stop && c->wanted == c->done) pthread_cond_wait(&c->kick_cv, &c->mu);
    if (c->stop) break;
    uint64_t id = c->wanted;  // kicks that came meanwhile are served by this one sweep
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&c->table);
    for (uint32_t i = 0; i < c->slots; i++) {
      if (c->entries[i].fd >= 0) read_entry(c, i);
    }
    pthread_mutex_unlock(&c->table);
    pthread_mutex_lock(&c->mu);
    c->done = id;
    pthread_cond_broadcast(&c->done_cv);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

static void counters_stop(napi_env env, counters_t *c) {
  if (c->running) {
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->kick_cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);  // at most one sweep away
    c->running = 0;
  }
  if (c->buffer_ref != NULL) {
    napi_delete_reference(env, c->buffer_ref);
    c->buffer_ref = NULL;
  }
}

static void counters_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  counters_t *c = data;
  counters_stop(env, c);
  pthread_mutex_destroy(&c->mu);
  pthread_mutex_destroy(&c->table);
  pthread_cond_destroy(&c->kick_cv);
  pthread_cond_destroy(&c->done_cv);
  free(c->entries);
  free(c);
}

static counters_t *counters_arg(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  counters_t *c = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < want || napi_get_value_external(env, argv[0], (void **)&c) != napi_ok || c == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "packet_stats counters: bad handle or arguments");
    return NULL;
  }
  return c;
}

napi_value js_counters_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t slots = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &slots) != napi_ok || slots == 0 || slots > 65536) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "countersStart: slots must be 1-65536");
    return NULL;
  }
  counters_t *c = calloc(1, sizeof *c);
  entry_t *entries = c ? calloc(slots, sizeof *entries) : NULL;
  if (entries == NULL) {
    free(c);
    napi_throw_error(env, "ENOMEM", "countersStart: out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < slots; i++) entries[i].fd = -1;
  c->entries = entries;
  c->slots = slots;
  napi_value buf;
  void *mem;
  if (napi_create_arraybuffer(env, (size_t)slots * SLOT_I32 * 4, &mem, &buf) != napi_ok ||
      napi_create_reference(env, buf, 1, &c->buffer_ref) != napi_ok) {
    free(entries);
    free(c);
    return NULL;
  }
  memset(mem, 0, (size_t)slots * SLOT_I32 * 4);
  c->shm = mem;
  pthread_mutex_init(&c->mu, NULL);
  pthread_mutex_init(&c->table, NULL);
  pthread_cond_init(&c->kick_cv, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);  // countersWait's deadline is monotonic
  pthread_cond_init(&c->done_cv, &ca);
  pthread_condattr_destroy(&ca);
  napi_value ext;
  if (napi_create_external(env, c, counters_finalize, NULL, &ext) != napi_ok) {
    counters_finalize(env, c, NULL);
    return NULL;
  }
  int err = pthread_create(&c->thread, NULL, counters_main, c);
  if (err != 0) {
    napi_throw_error(env, "E_THREAD", "countersStart: cannot start the counter thread");
    return NULL;  // the external's finalizer frees c
  }
  c->running = 1;
  return ext;
}

napi_value js_counters_buffer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  counters_t *c = counters_arg(env, info, 1, argv);
  if (c == NULL) return NULL;
  napi_value buf;
  if (c->buffer_ref == NULL || napi_get_reference_value(env, c->buffer_ref, &buf) != napi_ok) {
    napi_throw_error(env, "E_STOPPED", "countersBuffer: the counter thread was stopped");
    return NULL;
  }
  return buf;
}

// countersWatch(h, slot, fd): the fd must be one packet_stats opened (its ifindex comes from there).
napi_value js_counters_watch(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  counters_t *c = counters_arg(env, info, 3, argv);
  if (c == NULL) return NULL;
  void *state = NULL;
  size_t argc = 3;
  napi_get_cb_info(env, info, &argc, argv, NULL, &state);
  uint32_t slot;
  int32_t fd;
  if (napi_get_value_uint32(env, argv[1], &slot) != napi_ok || slot >= c->slots ||
      napi_get_value_int32(env, argv[2], &fd) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "countersWatch: slot out of range or fd not a number");
    return NULL;
  }
  int ifindex = -1;
  if (fd >= 0 && (ifindex = packet_stats_fd_ifindex(state, fd)) < 0) {
    napi_throw_error(env, "EBADF", "countersWatch: fd was not opened by packet_stats");
    return NULL;
  }
  pthread_mutex_lock(&c->table);  // waits for a sweep in progress: the old fd is not read after this
  entry_t *e = &c->entries[slot];
  e->fd = fd;
  e->ifindex = ifindex;
  e->total = 0;
  e->err = 0;
  // The count starts now (the socket's statistics were cleared at open).
  publish(c, slot, 0, mono_ns(), 0);
  pthread_mutex_unlock(&c->table);
  return NULL;
}

napi_value js_counters_kick(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  counters_t *c = counters_arg(env, info, 1, argv);
  if (c == NULL) return NULL;
  pthread_mutex_lock(&c->mu);
  uint64_t id = ++c->wanted;
  pthread_cond_signal(&c->kick_cv);
  pthread_mutex_unlock(&c->mu);
  napi_value out;
  napi_create_double(env, (double)id, &out);
  return out;
}

// countersWait(h, id, maxUs) -> true once sweep `id` (or a later one) is published, false on timeout.
napi_value js_counters_wait(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  counters_t *c = counters_arg(env, info, 3, argv);
  if (c == NULL) return NULL;
  double id = 0, max_us = 0;
  napi_get_value_double(env, argv[1], &id);
  napi_get_value_double(env, argv[2], &max_us);
  struct timespec dl;
  clock_gettime(CLOCK_MONOTONIC, &dl);
  uint64_t ns = (uint64_t)dl.tv_nsec + (uint64_t)(max_us > 0 ? max_us * 1e3 : 0);
  dl.tv_sec += (time_t)(ns / 1000000000u);
  dl.tv_nsec = (long)(ns % 1000000000u);
  pthread_mutex_lock(&c->mu);
  while (c->running && (double)c->done < id) {
    if (pthread_cond_timedwait(&c->done_cv, &c->mu, &dl) == ETIMEDOUT) break;
  }
  int ok = (double)c->done >= id;
  pthread_mutex_unlock(&c->mu);
  napi_value out;
  napi_get_boolean(env, ok, &out);
  return out;
}

// SCHED_FIFO for the counter thread (the sampler's priority), reset on fork; 0 leaves it normal.
napi_value js_counters_realtime(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  counters_t *c = counters_arg(env, info, 2, argv);
  if (c == NULL) return NULL;
  int32_t prio = 0;
  napi_get_value_int32(env, argv[1], &prio);
  if (prio <= 0 || prio > 99 || !c->running) return NULL;
  struct sched_param sp = { .sched_priority = prio };
  for (int i = 0; i < 1000 && __atomic_load_n(&c->tid, __ATOMIC_ACQUIRE) == 0; i++) usleep(100);
  if (c->tid == 0 || sched_setscheduler(c->tid, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0) {
    napi_throw_error(env, "EPERM", "countersRealtime: cannot set SCHED_FIFO for the counter thread");
  }
  return NULL;
}

napi_value js_counters_stop(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  counters_t *c = counters_arg(env, info, 1, argv);
  if (c == NULL) return NULL;
  counters_stop(env, c);
  return NULL;
}
