// Cost per frame of the tripwire's evidence keeping (tripwire_ring.h) on the tripwire thread, as
// the addon runs it (clock reads, a mutex, the copy), against the single last-frames ring it
// replaced. Built and run by scripts/bench-ring.mjs; no sockets, no namespaces: frames are
// synthetic, their monotonic times spaced as a storm (5 us apart: the head freezes and the tail
// rolls) or as chatter (10 ms apart: the head keeps rolling).
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tripwire_ring.h"

// The replaced ring: the last TW_RING frames, one clock read.
typedef struct {
  uint64_t next;
  tw_frame_t f[TW_RING];
} old_ring_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tw_evidence_t ev;
static old_ring_t old;
static volatile int64_t sink;

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void keep_old(const uint8_t *buf, size_t cap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  pthread_mutex_lock(&mu);
  size_t i = (size_t)(old.next % TW_RING);
  old.f[i].sec = ts.tv_sec;
  old.f[i].nsec = (int32_t)ts.tv_nsec;
  old.f[i].ifindex = 3;
  old.f[i].len = (uint32_t)cap;
  old.f[i].caplen = (uint16_t)cap;
  old.f[i].pkttype = 1;
  memcpy(old.f[i].data, buf, cap);
  old.next++;
  pthread_mutex_unlock(&mu);
}

// As tripwire_keep does, except that the monotonic time used for the decisions is synthetic
// (spaced by step_ns) while the clock is still read, so the cost is the real one.
static void keep_new(const uint8_t *buf, size_t cap, int64_t mono) {
  struct timespec ts, mt;
  clock_gettime(CLOCK_REALTIME, &ts);
  clock_gettime(CLOCK_MONOTONIC, &mt);
  sink = mt.tv_nsec;
  pthread_mutex_lock(&mu);
  tw_keep(&ev, ts.tv_sec, (int32_t)ts.tv_nsec, mono, buf, cap, (uint32_t)cap, 3, 1);
  pthread_mutex_unlock(&mu);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  long frames = argc > 1 ? atol(argv[1]) : 2000000;
  int runs = argc > 2 ? atoi(argv[2]) : 7;
  size_t cap = argc > 3 ? (size_t)atol(argv[3]) : 60;
  if (frames < 1000 || runs < 1 || runs > 99 || cap < 14 || cap > TW_SNAP) return 2;
  uint8_t buf[TW_SNAP];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)i;
  const char *names[] = { "old: last 256 only", "new, storm (5 us apart)", "new, chatter (10 ms apart)" };
  const int64_t steps[] = { 0, 5000, 10000000 };
  double ns[3][99];
  long frozen_at_end[3] = { 0, 0, 0 };
  // Variants interleaved run by run, so a machine busy elsewhere slows all three alike.
  for (int r = 0; r < runs; r++) {
    for (int v = 0; v < 3; v++) {
      memset(&ev, 0, sizeof ev);
      int64_t mono = 1000000000LL;
      int64_t t0 = now_ns();
      for (long k = 0; k < frames; k++) {
        if (v == 0) {
          keep_old(buf, cap);
        } else {
          mono += steps[v];
          keep_new(buf, cap, mono);
        }
      }
      ns[v][r] = (double)(now_ns() - t0) / (double)frames;
      frozen_at_end[v] += ev.frozen;
    }
  }
  for (int v = 0; v < 3; v++) {
    qsort(ns[v], (size_t)runs, sizeof ns[v][0], cmp);
    printf("{\"variant\":\"%s\",\"frames\":%ld,\"runs\":%d,\"capBytes\":%zu,\"nsPerFrameMedian\":%.1f,\"nsPerFrameMin\":%.1f,\"nsPerFrameMax\":%.1f,\"frozenAtEnd\":%ld}\n",
           names[v], frames, runs, cap, ns[v][runs / 2], ns[v][0], ns[v][runs - 1], frozen_at_end[v]);
  }
  return 0;
}
