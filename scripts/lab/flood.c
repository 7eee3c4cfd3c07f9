/*
 * Full-speed lab flood sender (issue 11): what a VM's virtio NIC does when a guest floods
 * broadcast, hundreds of kframes/s, which send.py (one python send() per frame, ~55-70k pps
 * here) cannot reach. One AF_PACKET socket, PACKET_QDISC_BYPASS (no qdisc lock per frame),
 * sendmmsg() in batches of the same 60-byte frame.
 *
 *   ip netns exec sbNS flood IFACE --duration S [--count N] [--kind broadcast|multicast|unicast]
 *
 * Prints one JSON line {"sent", "t_first_ns", "t_last_ns", "netns"} with CLOCK_MONOTONIC times
 * (send.py's format and clock). Bounded: at most MAX_DURATION_S and MAX_COUNT frames, stops at
 * its deadline, and alarm() kills it one second after that whatever the kernel does. Refuses to
 * run outside a named network namespace whose name starts with "sb" (the lab's), so lab traffic
 * never leaves the lab. Built by scripts/setup.sh into dist/scripts/lab/flood.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "lab-guard.h"

#define MAX_DURATION_S 10.0
#define MAX_COUNT 20000000L
#define BATCH 64
#define FRAME_LEN 60
#define ETHERTYPE_LOCAL 0x88B5 /* IEEE 802 local experimental ethertype 1, as send.py */

static int fail(const char *msg, const char *arg) {
  fprintf(stderr, "flood: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
  return 2;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}


int main(int argc, char **argv) {
  const char *iface = NULL, *kind = "broadcast";
  double duration = -1, count_d = -1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc) {
      if (!parse_num(argv[++i], &duration) || !(duration > 0 && duration <= MAX_DURATION_S)) return fail("--duration must be in (0, 10]:", argv[i]);
    } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
      if (!parse_num(argv[++i], &count_d) || !(count_d >= 1 && count_d <= MAX_COUNT) || count_d != (long)count_d) return fail("--count must be an integer in 1..20000000:", argv[i]);
    } else if (strcmp(argv[i], "--kind") == 0 && i + 1 < argc) {
      kind = argv[++i];
    } else if (argv[i][0] != '-' && iface == NULL) {
      iface = argv[i];
    } else {
      return fail("usage: flood IFACE --duration S [--count N] [--kind broadcast|multicast|unicast]; bad argument", argv[i]);
    }
  }
  if (iface == NULL || !valid_ifname(iface)) return fail("bad or missing interface name", iface);
  if (duration < 0) return fail("give --duration (seconds, <= 10)", NULL);
  unsigned char dst[6];
  if (strcmp(kind, "broadcast") == 0) memcpy(dst, "\xff\xff\xff\xff\xff\xff", 6);
  else if (strcmp(kind, "multicast") == 0) memcpy(dst, "\x01\x00\x5e\x77\x00\x01", 6);
  else if (strcmp(kind, "unicast") == 0) memcpy(dst, "\x02\x77\x00\xff\xff\x01", 6);
  else return fail("--kind must be broadcast, multicast or unicast:", kind);
  char netns[256];
  if (!current_netns(netns, sizeof netns) || strncmp(netns, "sb", 2) != 0)
    return fail("refusing to send: not inside a lab network namespace (sb..., run via `ip netns exec`)", NULL);
  alarm((unsigned)duration + 2); /* the hard stop, whatever happens below */

  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) return fail("socket(AF_PACKET):", strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one); /* best effort */
  struct sockaddr_ll sll = {0};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = (int)if_nametoindex(iface);
  if (sll.sll_ifindex == 0) return fail("no such interface:", iface);
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) return fail("bind:", strerror(errno));
  struct sockaddr_ll own = {0};
  socklen_t ol = sizeof own;
  if (getsockname(fd, (struct sockaddr *)&own, &ol) != 0) return fail("getsockname:", strerror(errno));

  static unsigned char frame[FRAME_LEN];
  memcpy(frame, dst, 6);
  memcpy(frame + 6, own.sll_addr, 6);
  frame[12] = ETHERTYPE_LOCAL >> 8;
  frame[13] = ETHERTYPE_LOCAL & 0xff;
  memcpy(frame + 14, "stormbreaker-lab", 16);
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = frame;
    iov[i].iov_len = FRAME_LEN;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }

  long count = count_d > 0 ? (long)count_d : MAX_COUNT, sent = 0;
  int64_t t0 = now_ns(), deadline = t0 + (int64_t)(duration * 1e9), t_first = 0, t_last = 0;
  while (sent < count) {
    int64_t t = now_ns();
    if (t >= deadline) break;
    unsigned n = (unsigned)(count - sent < BATCH ? count - sent : BATCH);
    if (sent == 0) t_first = t; /* before the send: the frame cannot arrive earlier */
    int r = sendmmsg(fd, msgs, n, 0);
    if (r < 0) {
      if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) continue; /* a full queue: retry */
      return fail("sendmmsg:", strerror(errno));
    }
    sent += r;
    t_last = now_ns();
  }
  close(fd);
  printf("{\"sent\": %ld, \"t_first_ns\": %lld, \"t_last_ns\": %lld, \"netns\": \"%s\"}\n", sent, (long long)t_first, (long long)t_last, netns);
  return 0;
}
