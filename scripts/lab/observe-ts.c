/*
 * Lab observer timed by the kernel (issue: prod's quiet was a bound, not a time). observe.mjs
 * polls rx_packets from userspace, so a reader held off its core (the agent's and the FDB
 * monitor's real-time threads hold both cores for 5-15 ms right after a trip) stamps the storm's
 * end late. This one reads each received frame's kernel timestamp from an AF_PACKET TPACKET_V3
 * ring: a reader that runs late still reports when each frame arrived.
 *
 *   ip netns exec sbNS observe-ts --ifaces eth0[,eth1...] --duration-ms N [--gap-us 50] [--ring-mb 32]
 *   observe-ts --encode --start-ns S --end-ns E [--gap-us 50]   (test mode: mono ns per line on
 *                                                                stdin, no sockets, no netns)
 *
 * stdout: observe.mjs's protocol. First {"ready":true,"tNs":...,"clock":"kernel"} once every
 * socket is bound; on SIGTERM, SIGINT or the duration's end one line {IFACE: {t, c, ...}}: t in
 * CLOCK_MONOTONIC ns (send.py's and Node's hrtime clock), c = frames received since the socket was
 * bound (not rx_packets itself: the analysis uses differences only). Points, from the sorted frame
 * times: a frame after a gap > gap-us, with a point 1 ns before it carrying the count before it;
 * the frame before a gap with the frame before it (so the last frame of a burst is bracketed by
 * its predecessor, <= gap-us earlier); one frame per 100 us inside a burst; one point per 10 ms
 * while quiet; the start (tNs) and the end. Extra fields per interface: "clock":"kernel", frames,
 * drops (ring full: frames rx_packets counted and the ring lost), dropWindows [[fromNs, toNs, n]],
 * afterEnd (frames stamped after the end, left out), maxReorderNs (ring order vs time order),
 * offsetErrNs / offsetDriftNs (the CLOCK_REALTIME -> CLOCK_MONOTONIC conversion), overflow.
 *
 * What is counted: frames the device received and handed to the stack (the socket is a tap on
 * it, PACKET_OUTGOING excluded), i.e. what veth's rx_packets counts, except frames the stack
 * dropped before the taps (none in the lab) and frames before the bind. The timestamp is the
 * skb's: taken when the frame was queued to the receiving CPU's backlog (netdev_tstamp_prequeue,
 * the moment veth counts rx_packets) once some socket asked for timestamps (this one does), else
 * when the softirq delivered it.
 *
 * Safety as flood.c: refuses to run outside a named network namespace whose name starts with
 * "sb", bounded duration (<= 60 s), alarm() kills it 10 s after its deadline. Built by
 * scripts/setup.sh into dist/scripts/lab/observe-ts.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "lab-guard.h"

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define MAX_DURATION_MS 60000.0
#define MAX_IFACES 8
#define MAX_FRAMES (16L * 1000 * 1000) /* kept per interface (128 MB); beyond: counted as overflow */
#define SNAPLEN 16                     /* nothing of the frame is used; copy little */
/* The kernel hands a block over when it is full or RETIRE_TOV_MS after its first frame, so a ring
 * of N blocks holds N * RETIRE_TOV_MS of slow traffic for a stopped reader (4 ms blocks in a 32
 * block ring lost frames after 128 ms at 20 kframes/s), and N * ~1,100 small frames of a fast
 * one: many small blocks. 32 MB: 256 blocks, 2.5 s of slow traffic, ~290,000 frames. */
#define BLOCK_SIZE (128 << 10)
#define BLOCKS_PER_MB 8
#define RETIRE_TOV_MS 10   /* a partly filled block reaches the reader after this */
#define GRACE_MS 30        /* after the end: retire the last block, let backlogs drain */
#define STEP_NS 100000LL   /* one point per 100 us inside a burst */
#define KEEP_NS 10000000LL /* one point per 10 ms while quiet (observe.mjs's keepalive) */
#define MAX_DROP_WINDOWS 64

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static int fail(const char *msg, const char *arg) {
  fprintf(stderr, "observe-ts: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
  return 2;
}

static int64_t clk(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
static int64_t mono(void) { return clk(CLOCK_MONOTONIC); }

/* CLOCK_REALTIME - CLOCK_MONOTONIC from the tightest of 64 mono/real/mono triples; *err = half its gap. */
static int64_t real_minus_mono(int64_t *err) {
  int64_t best = INT64_MAX, off = 0;
  for (int k = 0; k < 64; k++) {
    int64_t a = mono(), r = clk(CLOCK_REALTIME), b = mono();
    if (b - a < best) {
      best = b - a;
      off = r - (a + (b - a) / 2);
    }
  }
  *err = best / 2 + 1;
  return off;
}


/* ---- frame times ---- */

typedef struct {
  int64_t *t;
  long n, cap, overflow;
} Times;

static void times_push(Times *x, int64_t t) {
  if (x->n >= MAX_FRAMES) {
    x->overflow++;
    return;
  }
  if (x->n == x->cap) {
    long cap = x->cap ? x->cap * 2 : 65536;
    int64_t *p = realloc(x->t, (size_t)cap * sizeof *p);
    if (!p) {
      x->overflow++;
      return;
    }
    x->t = p;
    x->cap = cap;
  }
  x->t[x->n++] = t;
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static void sort_times(Times *x) {
  for (long i = 1; i < x->n; i++)
    if (x->t[i] < x->t[i - 1]) {
      qsort(x->t, (size_t)x->n, sizeof *x->t, cmp64);
      return;
    }
}

/* ---- the series encoding (pure: sorted times in, points out) ---- */

typedef struct {
  int64_t *t;
  long *c;
  long n, cap;
  int64_t start;
  long start_count;
  int start_done;
} Points;

static void pts_raw(Points *p, int64_t t, long c) {
  if (p->n > 0 && p->t[p->n - 1] == t && p->c[p->n - 1] == c) return;
  if (p->n == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 1024;
    p->t = realloc(p->t, (size_t)p->cap * sizeof *p->t);
    p->c = realloc(p->c, (size_t)p->cap * sizeof *p->c);
    if (!p->t || !p->c) {
      fprintf(stderr, "observe-ts: out of memory\n");
      exit(3);
    }
  }
  p->t[p->n] = t;
  p->c[p->n] = c;
  p->n++;
}

/* A point, with keepalives over a quiet stretch before it and the start point in its place. */
static void pts_add(Points *p, int64_t t, long c) {
  if (!p->start_done && t > p->start) {
    p->start_done = 1;
    pts_add(p, p->start, p->start_count);
  }
  if (p->n > 0) {
    int64_t lt = p->t[p->n - 1];
    long lc = p->c[p->n - 1];
    for (int64_t k = lt + KEEP_NS; k < t; k += KEEP_NS) pts_raw(p, k, lc);
  }
  pts_raw(p, t, c);
}

static long count_le(const int64_t *t, long n, int64_t x) {
  long lo = 0, hi = n;
  while (lo < hi) {
    long mid = (lo + hi) / 2;
    if (t[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* Points for frames t[0..n) (sorted, all <= end): see the header comment. */
static void encode(Points *p, const int64_t *t, long n, int64_t start, int64_t end, int64_t gap) {
  memset(p, 0, sizeof *p);
  p->start = start;
  p->start_count = count_le(t, n, start);
  for (long i = 0; i < n; i++) {
    int gap_before = i == 0 || t[i] - t[i - 1] > gap;
    int gap_after = i == n - 1 || t[i + 1] - t[i] > gap;
    if (gap_before) {
      pts_add(p, t[i] - 1, i);
      pts_add(p, t[i], i + 1);
    } else if (gap_after) {
      pts_add(p, t[i - 1], i);
      pts_add(p, t[i], i + 1);
    } else if (t[i] - p->t[p->n - 1] >= STEP_NS) {
      pts_add(p, t[i], i + 1);
    }
  }
  if (!p->start_done) pts_add(p, start, p->start_count); /* every frame came before the start */
  pts_add(p, end > start ? end : start, n);
}

/* ---- one watched interface ---- */

typedef struct {
  const char *name;
  int fd;
  uint8_t *ring;
  unsigned block_nr, cur;
  Times times;
  long drops, after_end;
  int64_t max_seen, max_reorder;
  int64_t last_read, min_since_read; /* drop windows: last stats read, earliest frame since */
  int64_t win[MAX_DROP_WINDOWS][3];
  int nwin;
} Iface;

static int open_iface(Iface *f, const char *name, unsigned ring_mb) {
  f->name = name;
  f->fd = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: nothing arrives before bind */
  if (f->fd < 0) return fail("socket(AF_PACKET):", strerror(errno));
  /* Received frames only (rx_packets counts no outgoing ones): the filter drops PACKET_OUTGOING
   * (4) and keeps SNAPLEN bytes of the rest; PACKET_IGNORE_OUTGOING (4.20+) keeps them from
   * reaching the filter at all. */
  struct sock_filter code[] = {
      {BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)},
      {BPF_JMP | BPF_JEQ | BPF_K, 0, 1, PACKET_OUTGOING},
      {BPF_RET | BPF_K, 0, 0, 0},
      {BPF_RET | BPF_K, 0, 0, SNAPLEN},
  };
  struct sock_fprog prog = {sizeof code / sizeof code[0], code};
  if (setsockopt(f->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) return fail("SO_ATTACH_FILTER:", strerror(errno));
  int one = 1;
  setsockopt(f->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one); /* best effort: the filter holds */
  /* Any socket asking for timestamps turns on the stack's stamping at enqueue (prequeue). */
  if (setsockopt(f->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0) return fail("SO_TIMESTAMPNS:", strerror(errno));
  int v3 = TPACKET_V3;
  if (setsockopt(f->fd, SOL_PACKET, PACKET_VERSION, &v3, sizeof v3) != 0) return fail("PACKET_VERSION:", strerror(errno));
  struct tpacket_req3 req = {0};
  req.tp_block_size = BLOCK_SIZE;
  req.tp_block_nr = ring_mb * BLOCKS_PER_MB;
  req.tp_frame_size = 2048;
  req.tp_frame_nr = (BLOCK_SIZE / 2048) * req.tp_block_nr;
  req.tp_retire_blk_tov = RETIRE_TOV_MS;
  if (setsockopt(f->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) return fail("PACKET_RX_RING:", strerror(errno));
  f->block_nr = req.tp_block_nr;
  f->ring = mmap(NULL, (size_t)BLOCK_SIZE * f->block_nr, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
  if (f->ring == MAP_FAILED) return fail("mmap:", strerror(errno));
  struct sockaddr_ll sll = {0};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = (int)if_nametoindex(name);
  if (sll.sll_ifindex == 0) return fail("no such interface:", name);
  if (bind(f->fd, (struct sockaddr *)&sll, sizeof sll) != 0) return fail("bind:", strerror(errno));
  f->max_seen = INT64_MIN;
  f->last_read = mono();
  f->min_since_read = INT64_MAX;
  return 0;
}

/* Every block the kernel handed over: record its frames' times (as CLOCK_MONOTONIC), give it back. */
static void drain(Iface *f, int64_t off) {
  for (;;) {
    struct tpacket_block_desc *bd = (void *)(f->ring + (size_t)f->cur * BLOCK_SIZE);
    if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) return;
    uint32_t num = bd->hdr.bh1.num_pkts;
    struct tpacket3_hdr *h = (void *)((uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt);
    for (uint32_t k = 0; k < num; k++) {
      int64_t t = (int64_t)h->tp_sec * 1000000000LL + h->tp_nsec - off;
      if (t < f->max_seen && f->max_seen - t > f->max_reorder) f->max_reorder = f->max_seen - t;
      if (t > f->max_seen) f->max_seen = t;
      if (t < f->min_since_read) f->min_since_read = t;
      times_push(&f->times, t);
      h = (void *)((uint8_t *)h + h->tp_next_offset);
    }
    __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    f->cur = (f->cur + 1) % f->block_nr;
  }
}

/* Ring drops since the last read (the kernel resets them on each read). A dropped frame came
 * after the last read and before this one; one that waited in a backlog may carry an earlier
 * stamp, so the window opens at the earliest frame delivered since, if that is earlier. */
static void read_drops(Iface *f) {
  struct tpacket_stats_v3 st = {0};
  socklen_t len = sizeof st;
  int64_t now = mono();
  if (getsockopt(f->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0 && st.tp_drops > 0) {
    f->drops += st.tp_drops;
    int64_t from = f->min_since_read < f->last_read ? f->min_since_read : f->last_read;
    if (f->nwin < MAX_DROP_WINDOWS) {
      f->win[f->nwin][0] = from;
      f->win[f->nwin][1] = now;
      f->win[f->nwin][2] = st.tp_drops;
      f->nwin++;
    } else {
      f->win[MAX_DROP_WINDOWS - 1][1] = now; /* widen the last window */
      f->win[MAX_DROP_WINDOWS - 1][2] += st.tp_drops;
    }
  }
  f->last_read = now;
  f->min_since_read = INT64_MAX;
}

static void print_series(const char *name, const Points *p, long frames) {
  printf("\"%s\":{\"clock\":\"kernel\",\"frames\":%ld,\"t\":[", name, frames);
  for (long i = 0; i < p->n; i++) printf(i ? ",%lld" : "%lld", (long long)p->t[i]);
  printf("],\"c\":[");
  for (long i = 0; i < p->n; i++) printf(i ? ",%ld" : "%ld", p->c[i]);
  printf("]");
}

static void report(Iface *fs, int n, int64_t start, int64_t end, int64_t gap, int64_t off_err, int64_t drift) {
  printf("{");
  for (int i = 0; i < n; i++) {
    Iface *f = &fs[i];
    sort_times(&f->times);
    long keep = count_le(f->times.t, f->times.n, end);
    f->after_end = f->times.n - keep;
    Points p;
    encode(&p, f->times.t, keep, start, end, gap);
    printf(i ? "," : "");
    print_series(f->name, &p, keep);
    printf(",\"drops\":%ld,\"dropWindows\":[", f->drops);
    for (int w = 0; w < f->nwin; w++) printf(w ? ",[%lld,%lld,%lld]" : "[%lld,%lld,%lld]", (long long)f->win[w][0], (long long)f->win[w][1], (long long)f->win[w][2]);
    printf("],\"afterEnd\":%ld,\"maxReorderNs\":%lld,\"offsetErrNs\":%lld,\"offsetDriftNs\":%lld,\"overflow\":%ld,\"gapNs\":%lld}", f->after_end, (long long)f->max_reorder,
           (long long)off_err, (long long)drift, f->times.overflow, (long long)gap);
    free(p.t);
    free(p.c);
  }
  printf("}\n");
  fflush(stdout);
}

/* Test mode: frame times (mono ns, one per line, any order) on stdin, the series on stdout. */
static int encode_stdin(int64_t start, int64_t end, int64_t gap) {
  Iface f = {0};
  f.name = "x";
  long long v;
  while (scanf("%lld", &v) == 1) times_push(&f.times, (int64_t)v);
  report(&f, 1, start, end, gap, 0, 0);
  free(f.times.t);
  return 0;
}

static int observe(char *ifaces, double duration_ms, unsigned ring_mb, int64_t gap) {
  char netns[256];
  if (!current_netns(netns, sizeof netns) || strncmp(netns, "sb", 2) != 0)
    return fail("refusing to observe: not inside a lab network namespace (sb..., run via `ip netns exec`)", NULL);
  alarm((unsigned)(duration_ms / 1000) + 10); /* the hard stop, whatever happens below */
  struct sigaction sa = {0};
  sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns at once */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  static Iface fs[MAX_IFACES];
  int n = 0;
  for (char *tok = strtok(ifaces, ","); tok; tok = strtok(NULL, ",")) {
    if (n == MAX_IFACES) return fail("too many interfaces (max 8)", NULL);
    if (!valid_ifname(tok)) return fail("bad interface name", tok);
    int rc = open_iface(&fs[n++], tok, ring_mb);
    if (rc) return rc;
  }
  if (n == 0) return fail("give --ifaces eth0[,eth1...]", NULL);
  int64_t off_err, off = real_minus_mono(&off_err);
  usleep(20000); /* the stack turns stamping on from a work item */
  int64_t start = mono(), end = start + (int64_t)(duration_ms * 1e6);
  printf("{\"ready\":true,\"tNs\":%lld,\"clock\":\"kernel\"}\n", (long long)start);
  fflush(stdout);
  struct pollfd pfd[MAX_IFACES];
  for (int i = 0; i < n; i++) pfd[i] = (struct pollfd){.fd = fs[i].fd, .events = POLLIN | POLLERR};
  while (!stop_flag && mono() < end) {
    poll(pfd, (nfds_t)n, 10);
    for (int i = 0; i < n; i++) drain(&fs[i], off), read_drops(&fs[i]);
  }
  int64_t t_end = mono();
  if (t_end > end) t_end = end;
  /* The last block reaches us RETIRE_TOV_MS after its last frame; backlogs drain meanwhile. */
  for (int64_t g = mono() + GRACE_MS * 1000000LL; mono() < g;) {
    poll(pfd, (nfds_t)n, 2);
    for (int i = 0; i < n; i++) drain(&fs[i], off), read_drops(&fs[i]);
  }
  int64_t err2, off2 = real_minus_mono(&err2);
  report(fs, n, start, t_end, gap, off_err > err2 ? off_err : err2, off2 - off);
  return 0;
}

int main(int argc, char **argv) {
  char *ifaces = NULL;
  double duration = 5000, ring_mb = 32, gap_us = 50, start = -1, end = -1;
  int encode_mode = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    double *dst = NULL;
    if (strcmp(a, "--encode") == 0) {
      encode_mode = 1;
      continue;
    }
    if (strcmp(a, "--ifaces") == 0 && i + 1 < argc) {
      ifaces = argv[++i];
      continue;
    }
    if (strcmp(a, "--duration-ms") == 0) dst = &duration;
    else if (strcmp(a, "--ring-mb") == 0) dst = &ring_mb;
    else if (strcmp(a, "--gap-us") == 0) dst = &gap_us;
    else if (strcmp(a, "--start-ns") == 0) dst = &start;
    else if (strcmp(a, "--end-ns") == 0) dst = &end;
    if (!dst || i + 1 >= argc || !parse_num(argv[++i], dst))
      return fail("usage: observe-ts --ifaces eth0[,eth1] --duration-ms N [--gap-us 50] [--ring-mb 32] | --encode --start-ns S --end-ns E; bad argument", a);
  }
  if (!(gap_us >= 1 && gap_us <= 10000)) return fail("--gap-us must be in [1, 10000]", NULL);
  int64_t gap = (int64_t)(gap_us * 1000);
  if (encode_mode) {
    if (!(start >= 0 && end >= start)) return fail("--encode needs --start-ns S --end-ns E (E >= S >= 0)", NULL);
    return encode_stdin((int64_t)start, (int64_t)end, gap);
  }
  if (!(duration > 0 && duration <= MAX_DURATION_MS)) return fail("--duration-ms must be in (0, 60000]", NULL);
  if (!(ring_mb >= 1 && ring_mb <= 256 && ring_mb == (unsigned)ring_mb)) return fail("--ring-mb must be an integer in 1..256", NULL);
  if (!ifaces) return fail("give --ifaces eth0[,eth1...]", NULL);
  return observe(ifaces, duration, (unsigned)ring_mb, gap);
}
