// The tripwire's evidence: what the tripwire thread keeps of the frames it receives, so that a
// trip can be saved as a pcapng (agent/daemon/captures.ts). Plain C, no N-API: the addon
// (packet_stats.c) calls it under its lock, and scripts/bench-ring.mjs times it alone.
//
// Two rings of the first TW_SNAP bytes of each frame. The head rolls over the last TW_RING
// frames until TW_RING of them arrived within TW_ONSET_SPAN_NS (a storm's rate), then freezes:
// it holds the storm's first frames, with what little came just before. Frames then roll through
// the tail until the flood is over (a gap of TW_QUIET_NS between two frames, or the last
// TW_QUIET_FRAMES spanning more than TW_QUIET_NS) and the head rolls again. A loop storm's first
// frame circles on, but the frames a storm gathers later (every host's ARP, retries, whatever
// still arrives after the shut) soon fill a ring of the last frames: the onset is what names who
// started it. Constant work per frame, no allocation: a few compares and one copy of at most
// TW_SNAP bytes.
#ifndef TRIPWIRE_RING_H
#define TRIPWIRE_RING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TW_SNAP 128
#define TW_RING 256
// > 5,120 frames/s over the whole namespace: no chatter; every lab or real loop storm (LAB-FACTS:
// 25-35k frames/s per port with a core busy, 200k+ idle).
#define TW_ONSET_SPAN_NS 50000000LL
// < 640 frames/s, or 100 ms without a frame: the flood is over.
#define TW_QUIET_NS 100000000LL
#define TW_QUIET_FRAMES 64
// A head held at a trip (tw_hold) stays frozen until its capture takes it, or this long: a quiet
// spell after the cut is no reason to roll the storm's first frames out before the copy.
#define TW_HOLD_NS 1000000000LL

typedef struct {
  int64_t sec;
  int32_t nsec;
  int32_t ifindex;
  uint32_t len;
  uint16_t caplen;
  uint8_t pkttype;
  uint8_t data[TW_SNAP];
} tw_frame_t;

typedef struct {
  uint64_t next; // frames ever put; the next one goes to slot next % TW_RING
  int64_t mono[TW_RING];
  tw_frame_t f[TW_RING];
} tw_ring_t;

typedef struct {
  tw_ring_t head; // rolling until a storm's rate freezes it: the onset
  tw_ring_t tail; // rolling while the head is frozen: the latest frames
  int frozen;
  int64_t last_ns; // monotonic time of the previous frame
  int64_t held_ns; // monotonic time of the trip that held the head (tw_hold); 0: not held
} tw_evidence_t;

static inline void tw_put(tw_ring_t *r, int64_t sec, int32_t nsec, int64_t mono, const uint8_t *buf, size_t cap, uint32_t len, int ifindex, uint8_t pkttype) {
  size_t i = (size_t)(r->next % TW_RING);
  r->mono[i] = mono;
  r->f[i].sec = sec;
  r->f[i].nsec = nsec;
  r->f[i].ifindex = ifindex;
  r->f[i].len = len;
  r->f[i].caplen = (uint16_t)cap;
  r->f[i].pkttype = pkttype;
  memcpy(r->f[i].data, buf, cap);
  r->next++;
}

// Monotonic time of a ring's k-th newest frame (k = 1: the newest); needs r->next >= k.
static inline int64_t tw_mono_of(const tw_ring_t *r, uint64_t k) {
  return r->mono[(size_t)((r->next - k) % TW_RING)];
}

// One frame (cap <= TW_SNAP bytes of it in buf) into the evidence.
static inline void tw_keep(tw_evidence_t *ev, int64_t sec, int32_t nsec, int64_t mono, const uint8_t *buf, size_t cap, uint32_t len, int ifindex, uint8_t pkttype) {
  if (ev->frozen && (ev->held_ns == 0 || mono - ev->held_ns > TW_HOLD_NS)) {
    const tw_ring_t *t = &ev->tail;
    if (mono - ev->last_ns >= TW_QUIET_NS || (t->next >= TW_QUIET_FRAMES && mono - tw_mono_of(t, TW_QUIET_FRAMES - 1) > TW_QUIET_NS)) {
      // The flood is over and nobody read it (no trip): the head rolls again from here.
      ev->frozen = 0;
      ev->held_ns = 0;
      ev->tail.next = 0;
    }
  }
  if (ev->frozen) {
    tw_put(&ev->tail, sec, nsec, mono, buf, cap, len, ifindex, pkttype);
  } else {
    tw_put(&ev->head, sec, nsec, mono, buf, cap, len, ifindex, pkttype);
    if (ev->head.next >= TW_RING && mono - tw_mono_of(&ev->head, TW_RING) <= TW_ONSET_SPAN_NS) ev->frozen = 1;
  }
  ev->last_ns = mono;
}

// A trip's verdict came: freeze the head as it is, so that a storm cut before it froze by rate (a
// fast cut, or a reader starved of its core missing frames) keeps its first frames; whatever
// floods after the cut goes to the tail until the capture is taken (tw_take), however quiet it
// gets meanwhile (up to TW_HOLD_NS). Returns frozen.
static inline int tw_hold(tw_evidence_t *ev, int64_t mono) {
  if (!ev->frozen && ev->head.next > 0) {
    ev->frozen = 1;
    ev->tail.next = 0;
  }
  if (ev->frozen) ev->held_ns = mono > 0 ? mono : 1;
  return ev->frozen;
}

// Copy the evidence out (head, and the tail when frozen; an unfrozen tail comes back empty) and
// re-open the head, so the next storm's onset is not mixed with this one's. Returns frozen.
static inline int tw_take(tw_evidence_t *ev, tw_ring_t *head, tw_ring_t *tail) {
  int frozen = ev->frozen;
  memcpy(head, &ev->head, sizeof *head);
  memcpy(tail, &ev->tail, sizeof *tail);
  ev->held_ns = 0;
  if (frozen) {
    ev->frozen = 0;
    ev->tail.next = 0;
    ev->head.next = 0;
  } else {
    tail->next = 0;
  }
  return frozen;
}

#endif
