// packet_stats: count incoming broadcast or multicast frames of one interface.
//
// Linux keeps no per-interface broadcast counter (sysfs/netlink have none, and
// `multicast` stays 0 on veth), so we let the kernel count for us: one AF_PACKET
// socket per (interface, kind) with a classic BPF filter that accepts only
// skb->pkt_type == PACKET_BROADCAST (or PACKET_MULTICAST). Every frame the filter
// accepts bumps the socket's PACKET_STATISTICS counter, whether it is queued or
// dropped for lack of receive buffer (af_packet.c packet_rcv(): tp_packets++ when
// queued, tp_drops++ on drop_n_acct; packet_getsockopt() returns
// tp_packets + tp_drops as tp_packets and clears both). We never read frames: the
// tiny receive queue fills once and from then on every matching frame is dropped
// before it is even cloned, which is the cheapest path through packet_rcv().
//
// Once the queue is full every match is a drop, which packet_rcv() also counts in the
// socket's sk_drops: read() takes that from SO_MEMINFO (lock-free) and calls
// PACKET_STATISTICS only after frames were queued, once the socket is quiet
// (read_counter_delta() says why: that call forwarded the storm on the sampler's thread). Both are turned into a
// running 64-bit total per fd, an ordinary monotonically increasing counter for JS.
//
// API (see agent/sources/packet.ts):
//   open(ifname, 'broadcast' | 'multicast' | 'txflood' | 'txforeign') -> fd
//     txflood / txforeign (for a macvtap/macvlan device: what its GUEST sends, session 18):
//     the device's OUTGOING frames to a group address (broadcast or multicast), and of those
//     the ones whose source MAC is not the device's own (read at open: frames the guest
//     forwards, as a bridge inside it does). A macvtap's transmit is its guest's send; no
//     counter of it exists elsewhere. Outgoing frames reach the socket by dev_queue_xmit_nit,
//     which clones each frame the guest sends once for all such sockets (incoming frames are
//     not cloned): open these on guests' devices only.
//   read(fd) -> cumulative count (throws ENODEV once the interface is deleted)
//   close(fd)
//   closeMany(fds) -> Promise<void>: closes many at once, off the JS thread (see below)
//   startTripwire(onFrame, rtPriority) -> handle: a BLOCKING socket bound to every
//     interface of the namespace that receives one byte of each incoming broadcast/multicast
//     frame (500 ms receive timeout), read by a dedicated thread (SCHED_FIFO at rtPriority
//     when > 0) that calls onFrame on the JS thread once per armTripwire(handle, minFrames,
//     windowNs), on the first burst of minFrames frames within windowNs (default 1 frame), so
//     the first frames of a storm wake an idle sampler at once and chatter below that rate never
//     reaches the JS thread; stopTripwire(handle).
//     The thread keeps the first TW_SNAP bytes of the frames it receives, with wall-clock time,
//     interface and original length, in two rings (copies into memory allocated at start):
//     the head rolls over the last TW_RING frames until TW_RING frames arrive within
//     TW_ONSET_SPAN_NS (a storm's rate), then freezes, holding the storm's onset; later frames
//     roll through the tail until the flood ends (tripwire_ring.h). tripwireFrames(handle) ->
//     [{ sec, nsec, ifindex, len, pktType, onset, data }] oldest first, the frozen head's
//     frames (onset: true) then the tail's: the storm's evidence, read after the shut, never
//     before it; reading re-opens the head for the next storm.
//     readTripwireMoves(handle) -> [mono, ifindex, mac, ...] or undefined: the source MACs the thread saw
//     arrive on another interface than their previous frame since the last call (a loop's
//     flap, ~2 ms before `bridge monitor fdb` prints it; see tw_source_seen).
//     tripwireHold(handle) -> frozen: freeze the evidence's head now (at a trip; see tw_hold).
//     tripwireReturns(handle) -> [ifindex, count, ...] or undefined: per interface, how many frames
//     it read since the last call came back (the same bytes received again by that interface
//     within TW_RETURN_NS; see tw_return_seen).
//     A dedicated thread rather than a read on libuv's pool so that its priority is ours to
//     set: under a storm that pegs a core, a normal-priority waker is exactly what starves.
//   setRealtime(priority) -> SCHED_FIFO for the calling (JS) thread only, reset on fork
//     so child processes (ip, bridge monitor) and later threads run at normal priority.
//   probeOpen(ethertype, rcvbufBytes) -> fd: the preflight loop probe's socket
//     (agent/preflight/probe.ts). Bound to every interface of the namespace (ETH_P_ALL,
//     ifindex 0) with a classic BPF filter that accepts only INCOMING frames of one
//     ethertype (up to 256 bytes). ETH_P_ALL puts it on the ptype_all tap list, which
//     __netif_receive_skb_core walks BEFORE the tc/netfilter ingress hooks and the bridge's
//     rx_handler: it sees probe frames that an nft netdev ingress rule then drops. (A socket
//     bound to the probe ethertype itself would be a ptype_base handler, run after the
//     bridge and after ingress, and would see nothing.) Close with close(fd); read(fd)
//     gives frames matched (queued or dropped for lack of buffer).
//   probeSend(fd, ifindex, frame) -> bytes: send one raw Ethernet frame out of ifindex.
//   probeRecv(fd, max) -> [{ ifindex, pktType, frame }]: frames queued now, never blocks.
//   setBridgePortState(ifindex, state) -> 0 or an errno number (never throws for the kernel's
//     refusal): the bridge port's STP state (0 disabled .. 3 forwarding), as `bridge link set
//     dev X state N` does (RTM_SETLINK, AF_BRIDGE, IFLA_PROTINFO/IFLA_BRPORT_STATE), over one
//     NETLINK_ROUTE socket kept open. The fast stop of a looping port (agent/actions/link.ts).
//   sdNotify(socketPath, message) -> bytes: one datagram to systemd's notification socket
//     ($NOTIFY_SOCKET; '@' = abstract namespace), as sd_notify(3) does, without libsystemd.
//   preadInts(fds: Int32Array, out: Float64Array, n): the integer at the start of each of the
//     first n fds (pread at offset 0: the sysfs counters the local source keeps open), NaN
//     without digits, -errno on a failed read; one call per tick instead of three per port.

#include <node_api.h>

#include "tripwire_ring.h"

#include <errno.h>
#include <math.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/sock_diag.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#include <unistd.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/uio.h>
#include <time.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_bridge.h>

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

typedef struct {
  // Frames matched since open, summed over clear-on-read statistics.
  uint64_t total;
  // Counter sockets (open()) count drops by SO_MEMINFO (see read_counter_delta); the probe's
  // socket, which is drained, reads PACKET_STATISTICS alone.
  uint8_t by_meminfo;
  // SO_MEMINFO's drops and receive-memory figures at the last read.
  uint32_t last_drops;
  uint32_t last_rmem;
  // Frames were queued since the last PACKET_STATISTICS read: it is owed (read_counter_delta).
  uint8_t queued;
  // Interface the socket was bound to; the kernel sets the socket's ifindex to -1
  // when that interface is unregistered (packet_notifier, NETDEV_UNREGISTER).
  int ifindex;
  uint8_t used;
  char ifname[IF_NAMESIZE];
} slot_t;

// Per-environment state (one per Node thread that loads the addon), indexed by fd:
// fds are small integers, so a flat array makes read() a bounds check and a load.
typedef struct {
  slot_t *slots;
  size_t cap;
  // NETLINK_ROUTE socket of setBridgePortState, opened on first use and kept (fd + 1; 0 = none).
  int rtnl_fd1;
  uint32_t rtnl_seq;
} state_t;

static void throw_code(napi_env env, const char *code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  napi_throw_error(env, code, msg);
}

static const char *errno_name(int err) {
  const char *name = strerrorname_np(err);
  return name != NULL ? name : "EUNKNOWN";
}

static void throw_errno(napi_env env, int err, const char *what, const char *ifname) {
  throw_code(env, errno_name(err), "packet_stats %s %s: %s", what, ifname, strerror(err));
}

static int attach_filter(int fd, struct sock_filter *code, unsigned short len) {
  struct sock_fprog prog = { .len = len, .filter = code };
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}

// The common arming sequence of every AF_PACKET socket here: a drop-all filter first (frames
// arriving before the real filter must not count), our own transmitted frames skipped before
// they are even cloned for us (kernel >= 4.20; the filters reject them anyway), bind (ifindex 0:
// every interface; a down interface is hooked on NETDEV_UP), drain what queued meanwhile, clear
// the statistics, then swap in the real filter. Returns 0 or -errno; the caller closes on error.
static int arm_packet_socket_dir(int fd, int ifindex, struct sock_filter *code, unsigned short len, int drain_max, int outgoing) {
  struct sock_filter drop_all[] = {
    BPF_STMT(BPF_RET | BPF_K, 0),
  };
  int one = 1;
  struct tpacket_stats st;
  socklen_t stlen = sizeof st;
  struct sockaddr_ll sll;
  char byte;
  if (attach_filter(fd, drop_all, 1) < 0) return -errno;
  if (!outgoing && setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0 &&
      errno != ENOPROTOOPT && errno != EINVAL)
    return -errno;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = ifindex;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) return -errno;
  for (int i = 0; i < drain_max; i++) {
    if (recv(fd, &byte, 1, MSG_DONTWAIT | MSG_TRUNC) < 0) break;
  }
  if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &stlen) < 0) return -errno;
  if (attach_filter(fd, code, len) < 0) return -errno;
  return 0;
}

static int arm_packet_socket(int fd, int ifindex, struct sock_filter *code, unsigned short len, int drain_max) {
  return arm_packet_socket_dir(fd, ifindex, code, len, drain_max, 0);
}

// A counter socket (tiny receive buffer, nonblocking) armed with `code`; returns fd or -errno.
static int open_counter_filter(int ifindex, struct sock_filter *code, unsigned short len, int outgoing) {
  int zero = 0, err;
  // Protocol 0: the socket sees nothing until bind() hooks it to the interface.
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  // The kernel raises 0 to its minimum (SOCK_MIN_RCVBUF): a frame or two fit.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &zero, sizeof zero) < 0) {
    err = -errno;
  } else {
    err = arm_packet_socket_dir(fd, ifindex, code, len, 64, outgoing);
  }
  if (err < 0) {
    close(fd);
    return err;
  }
  return fd;
}

// Outgoing frames to a group address (first destination byte's low bit); with `own` (6 bytes),
// only those whose source MAC is not `own`. Returns fd or -errno.
static int open_tx_counter(int ifindex, const unsigned char *own) {
  uint32_t hi = own ? ((uint32_t)own[0] << 24 | (uint32_t)own[1] << 16 | (uint32_t)own[2] << 8 | own[3]) : 0;
  uint32_t lo = own ? ((uint32_t)own[4] << 8 | own[5]) : 0;
  struct sock_filter code[] = {
    /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
    /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 0, 7),
    /* 2 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
    /* 3 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x01, 0, 5),
    /* 4 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 6),
    /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, hi, 0, 2),
    /* 6 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 10),
    /* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, lo, 1, 0),
    /* 8 */ BPF_STMT(BPF_RET | BPF_K, 1),
    /* 9 */ BPF_STMT(BPF_RET | BPF_K, 0),
  };
  if (!own) {
    // Every group-addressed frame: accept at 4 (jump straight to the accept).
    code[4] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 1);
  }
  return open_counter_filter(ifindex, code, sizeof code / sizeof code[0], 1);
}

// Opens and configures the socket; returns fd or -errno.
static int open_counter(int ifindex, unsigned pkttype) {
  // A = skb->pkt_type; accept (snaplen 1) if it is the wanted type, else drop.
  // PACKET_OUTGOING (our own tx) never matches BROADCAST/MULTICAST.
  struct sock_filter by_type[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, pkttype, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, 1),
    BPF_STMT(BPF_RET | BPF_K, 0),
  };
  return open_counter_filter(ifindex, by_type, sizeof by_type / sizeof by_type[0], 0);
}


// The tripwire: blocking, all interfaces (ifindex 0), broadcast or multicast, TW_SNAP bytes.
static int open_tripwire(void) {
  struct sock_filter bcast_mcast[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_BROADCAST, 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_MULTICAST, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, TW_SNAP),
    BPF_STMT(BPF_RET | BPF_K, 0),
  };
  int zero = 0, err = 0;
  struct timeval tv = { .tv_sec = 0, .tv_usec = 500000 };
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  // A blocked read returns EAGAIN twice a second, so the reader can notice a stop.
  int one = 1;
  // PACKET_AUXDATA: each frame's original length (the filter truncates the copy to TW_SNAP).
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &zero, sizeof zero) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
      setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) < 0) {
    err = -errno;
  } else {
    err = arm_packet_socket(fd, 0, bcast_mcast, sizeof bcast_mcast / sizeof bcast_mcast[0], 64);
  }
  if (err < 0) {
    close(fd);
    return err;
  }
  return fd;
}

static int ensure_slot(state_t *s, int fd) {
  if ((size_t)fd < s->cap) return 0;
  size_t cap = s->cap ? s->cap : 64;
  while (cap <= (size_t)fd) cap *= 2;
  slot_t *slots = realloc(s->slots, cap * sizeof *slots);
  if (slots == NULL) return -ENOMEM;
  memset(slots + s->cap, 0, (cap - s->cap) * sizeof *slots);
  s->slots = slots;
  s->cap = cap;
  return 0;
}

static slot_t *find_slot(state_t *s, int fd) {
  if (fd < 0 || (size_t)fd >= s->cap || !s->slots[fd].used) return NULL;
  return &s->slots[fd];
}

// Track a freshly opened socket in its slot and hand its fd to JS; closes it on failure.
static napi_value register_fd(napi_env env, state_t *s, int fd, int ifindex, const char *name, const char *what) {
  int err = ensure_slot(s, fd);
  if (err < 0) {
    close(fd);
    throw_errno(env, -err, what, name);
    return NULL;
  }
  slot_t *slot = &s->slots[fd];
  slot->total = 0;
  slot->by_meminfo = 0;
  slot->last_drops = 0;
  slot->last_rmem = 0;
  slot->queued = 0;
  slot->ifindex = ifindex;
  slot->used = 1;
  snprintf(slot->ifname, sizeof slot->ifname, "%s", name);
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

// The interface's hardware address (SIOCGIFHWADDR) into own[6]; 0 or -errno.
static int own_mac(const char *ifname, unsigned char *own) {
  struct ifreq ifr;
  int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, ifname, strnlen(ifname, IFNAMSIZ - 1));  // zero-terminated by the memset
  int r = ioctl(fd, SIOCGIFHWADDR, &ifr);
  int err = r < 0 ? -errno : 0;
  close(fd);
  if (err == 0) memcpy(own, ifr.ifr_hwaddr.sa_data, 6);
  return err;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  state_t *s;
  char ifname[IF_NAMESIZE + 1];
  char kind[16];
  size_t n;

  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&s) != napi_ok) return NULL;
  if (argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], ifname, sizeof ifname, &n) != napi_ok ||
      n == 0 || n >= IF_NAMESIZE) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE",
                          "packet_stats open: ifname must be a string of 1-15 bytes");
    return NULL;
  }
  unsigned pkttype = 0;
  int tx = 0;  // 1: txflood, 2: txforeign
  if (napi_get_value_string_utf8(env, argv[1], kind, sizeof kind, &n) != napi_ok) n = 0;
  if (n > 0 && strcmp(kind, "broadcast") == 0) {
    pkttype = PACKET_BROADCAST;
  } else if (n > 0 && strcmp(kind, "multicast") == 0) {
    pkttype = PACKET_MULTICAST;
  } else if (n > 0 && strcmp(kind, "txflood") == 0) {
    tx = 1;
  } else if (n > 0 && strcmp(kind, "txforeign") == 0) {
    tx = 2;
  } else {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE",
                          "packet_stats open: kind must be 'broadcast', 'multicast', 'txflood' or 'txforeign'");
    return NULL;
  }

  unsigned ifindex = if_nametoindex(ifname);
  if (ifindex == 0) {
    throw_errno(env, errno ? errno : ENODEV, "open", ifname);
    return NULL;
  }
  int fd;
  if (tx == 2) {
    unsigned char own[6];
    int err = own_mac(ifname, own);
    fd = err < 0 ? err : open_tx_counter((int)ifindex, own);
  } else {
    fd = tx == 1 ? open_tx_counter((int)ifindex, NULL) : open_counter((int)ifindex, pkttype);
  }
  if (fd < 0) {
    throw_errno(env, -fd, "open", ifname);
    return NULL;
  }
  napi_value out = register_fd(env, s, fd, (int)ifindex, ifname, "open");
  // A fresh socket: sk_drops 0, nothing queued (the drop-all filter ran until the real one).
  if (out != NULL) s->slots[fd].by_meminfo = 1;
  return out;
}

static slot_t *slot_arg(napi_env env, napi_callback_info info, const char *what, int *fd_out) {
  size_t argc = 1;
  napi_value argv[1];
  state_t *s;
  int fd;

  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&s) != napi_ok) return NULL;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "packet_stats: fd must be a number");
    return NULL;
  }
  slot_t *slot = find_slot(s, fd);
  if (slot == NULL) {
    // Never touch an fd we did not open: it may belong to someone else now.
    throw_code(env, "EBADF", "packet_stats %s: fd %d was not opened by packet_stats", what, fd);
    return NULL;
  }
  *fd_out = fd;
  return slot;
}

// Frames matched since the last read, or -errno.
//
// PACKET_STATISTICS takes the receive queue's lock with spin_lock_bh(); its spin_unlock_bh()
// runs the softirqs pending on this CPU, so during a storm that read forwarded the storm's
// frames (NET_RX, br_flood) on the sampler's own thread: 3-15 ms per read in a storm tick
// (perf, session 10). A counter socket's queue fills with its first frames and is never read,
// so every later match is a drop, which packet_rcv() also counts in sk->sk_drops; SO_MEMINFO
// reads that (sk_get_meminfo(): atomic reads, no lock, no softirq). The frames that were
// queued instead are counted by PACKET_STATISTICS (tp_packets - tp_drops), read only when the
// queue's memory moved, i.e. a frame was queued: a few times in a socket's life.
//
// ...and only once the socket is quiet: neither a drop nor a queued frame since the read before.
// A socket whose queue was still empty when a storm came (a fresh agent on a quiet segment, a
// port that just appeared) sees its first frames queued, then the rest dropped: reading
// PACKET_STATISTICS then forwarded the storm on this thread for ~2 ms (softirq's time limit;
// lab probes of the first storm's tick, session 13: collect 2.2-2.7 ms, the read right after
// the first frames as much as after the overflow). Deferred, the few queued frames (the queue
// holds a frame or two) are counted at the first quiet read: late by those frames, never lost.
static int64_t read_counter_delta(int fd, slot_t *slot) {
  struct tpacket_stats st;
  socklen_t len = sizeof st;
  if (slot->by_meminfo) {
    uint32_t mi[SK_MEMINFO_VARS];
    socklen_t ml = sizeof mi;
    if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &ml) == 0 && ml >= sizeof mi) {
      int64_t delta = (uint32_t)(mi[SK_MEMINFO_DROPS] - slot->last_drops);
      slot->last_drops = mi[SK_MEMINFO_DROPS];
      int moved = mi[SK_MEMINFO_RMEM_ALLOC] != slot->last_rmem;
      slot->last_rmem = mi[SK_MEMINFO_RMEM_ALLOC];
      if (moved) slot->queued = 1;
      if (moved || delta > 0 || !slot->queued) return delta;
      slot->queued = 0;
      if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) < 0) return -errno;
      return delta + (int64_t)(st.tp_packets - st.tp_drops);
    }
    // No SO_MEMINFO (kernel < 4.12): PACKET_STATISTICS from now on.
    slot->by_meminfo = 0;
  }
  if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) < 0) return -errno;
  // tp_packets already includes tp_drops (see top of file).
  return st.tp_packets;
}

static napi_value js_read(napi_env env, napi_callback_info info) {
  int fd;
  slot_t *slot = slot_arg(env, info, "read", &fd);
  if (slot == NULL) return NULL;

  int64_t delta = read_counter_delta(fd, slot);
  if (delta < 0) {
    throw_errno(env, (int)-delta, "read", slot->ifname);
    return NULL;
  }
  slot->total += (uint64_t)delta;

  // A deleted interface just stops counting, so check the binding, but only when
  // nothing arrived: a frame counted in this interval proves the interface was there.
  if (delta == 0) {
    struct sockaddr_ll sll;
    socklen_t sl = sizeof sll;
    if (getsockname(fd, (struct sockaddr *)&sll, &sl) < 0) {
      throw_errno(env, errno, "read", slot->ifname);
      return NULL;
    }
    if (sll.sll_ifindex != slot->ifindex) {
      throw_code(env, "ENODEV", "packet_stats read %s: %s (interface was deleted or moved)",
                 slot->ifname, strerror(ENODEV));
      return NULL;
    }
  }

  napi_value out;
  napi_create_double(env, (double)slot->total, &out);
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  int fd;
  slot_t *slot = slot_arg(env, info, "close", &fd);
  if (slot == NULL) return NULL;
  slot->used = 0;
  // close() on a socket cannot fail in a way we could act on; the fd is gone either way.
  close(fd);
  return NULL;
}


// --- closing many sockets at once ------------------------------------------------------------
//
// Closing an AF_PACKET socket waits for an RCU grace period: packet_release()
// (net/packet/af_packet.c) unhooks the socket from the receive path and calls synchronize_net()
// (net/core/dev.c: synchronize_rcu() unless RTNL is held) before freeing it, so no CPU still
// delivering a frame can touch it. The last close() of a file runs that release on the closing
// thread before the syscall returns (fput() -> task_work), so one thread closing 2 sockets per
// port for 512 ports waits ~1,024 grace periods: ~12 ms each with normal RCU, 12.6 s measured
// (rcu_expedited=1 makes them microseconds). Grace periods are shared by every waiter, so
// closes on parallel threads overlap their waits: CLOSE_THREADS threads take the fds from a
// common counter; the last one to finish resolves the promise on the JS thread. The JS thread
// never waits, so a rescan that drops ports does not stall the sampler either.
#define CLOSE_THREADS 64

typedef struct {
  int *fds;
  size_t n;
  atomic_size_t next;
  atomic_int running;
  napi_threadsafe_function tsfn;
  napi_deferred deferred;
} close_job_t;

static void close_job_done(napi_env env, napi_value cb, void *context, void *data) {
  (void)cb;
  (void)data;
  close_job_t *job = context;
  if (env != NULL) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, job->deferred, undef);
  }
  free(job->fds);
  free(job);
}

static void close_job_run(close_job_t *job) {
  for (;;) {
    size_t i = atomic_fetch_add(&job->next, 1);
    if (i >= job->n) break;
    close(job->fds[i]);
  }
}

static void *close_job_main(void *arg) {
  close_job_t *job = arg;
  close_job_run(job);
  if (atomic_fetch_sub(&job->running, 1) == 1) {
    // The call may free job on the JS thread before release returns: keep the handle here.
    napi_threadsafe_function tsfn = job->tsfn;
    napi_call_threadsafe_function(tsfn, NULL, napi_tsfn_blocking);
    napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  }
  return NULL;
}

// closeMany(fds) -> Promise<void>: forgets every fd (each must be ours, checked before any is
// touched) and closes them on up to CLOSE_THREADS threads; resolves once all are closed.
static napi_value js_close_many(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], promise, name;
  state_t *s;
  bool is_arr = false;
  uint32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&s) != napi_ok) return NULL;
  if (argc < 1 || napi_is_array(env, argv[0], &is_arr) != napi_ok || !is_arr ||
      napi_get_array_length(env, argv[0], &n) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "closeMany: an array of fds expected");
    return NULL;
  }
  close_job_t *job = calloc(1, sizeof *job);
  int *fds = calloc(n ? n : 1, sizeof *fds);
  if (job == NULL || fds == NULL) {
    free(job);
    free(fds);
    throw_errno(env, ENOMEM, "closeMany", "*");
    return NULL;
  }
  job->fds = fds;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    int fd = -1;
    if (napi_get_element(env, argv[0], i, &v) != napi_ok || napi_get_value_int32(env, v, &fd) != napi_ok ||
        find_slot(s, fd) == NULL) {
      free(fds);
      free(job);
      // Never touch an fd we did not open: it may belong to someone else now.
      throw_code(env, "EBADF", "packet_stats closeMany: fd %d was not opened by packet_stats", fd);
      return NULL;
    }
    fds[i] = fd;
  }
  for (uint32_t i = 0; i < n; i++) s->slots[fds[i]].used = 0;
  job->n = n;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "packet_stats.closeMany", NAPI_AUTO_LENGTH, &name);
  size_t want = n < CLOSE_THREADS ? n : CLOSE_THREADS;
  if (want == 0 ||
      napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, job, close_job_done, &job->tsfn) != napi_ok) {
    close_job_run(job);  // nothing to close, or no way back to JS: close here, in line
    close_job_done(env, NULL, job, NULL);
    return promise;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);  // a close needs little stack; 64 threads, 4 MiB
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  atomic_store(&job->running, (int)want + 1);  // +1: this thread's hold until all are started
  size_t started = 0;
  for (; started < want; started++) {
    pthread_t t;
    if (pthread_create(&t, &attr, close_job_main, job) != 0) break;
  }
  pthread_attr_destroy(&attr);
  // Threads that could not start are not waited for; with none started, this thread closes all.
  if (started == 0) close_job_run(job);
  napi_threadsafe_function tsfn = job->tsfn;
  if (atomic_fetch_sub(&job->running, (int)(want - started) + 1) == (int)(want - started) + 1) {
    napi_call_threadsafe_function(tsfn, NULL, napi_tsfn_blocking);
    napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  }
  return promise;
}


// --- tripwire thread ------------------------------------------------------------------------

// Source MACs the tripwire remembers, and the moves it keeps for JS between two reads (a tick
// reads them; a storm's thread reads one frame per TW_STORM_READ_NS, ~2 moves per ms at most).
#define TW_SOURCES 1024
#define TW_MOVES 256

typedef struct {
  uint8_t mac[6];
  uint8_t used;
  int32_t ifindex;
} tw_source_t;

typedef struct {
  int64_t mono;
  int32_t ifindex;
  uint8_t mac[6];
} tw_move_t;

// Frames the tripwire remembers to see them come back (tw_return_seen), and the interfaces whose
// returns it counts (the first TW_RET_PORTS to have one: the ports of a loop are few).
#define TW_SEEN 1024
#define TW_RET_PORTS 64
// The same frame received again by the same interface within this long came back: a ring of up
// to a few hundred frames at a few thousand frames/s brings each one round within it.
#define TW_RETURN_NS 100000000LL

typedef struct {
  uint64_t hash; // of the frame's first bytes, its length and the interface; 0: empty
  int64_t mono;
} tw_seen_t;

typedef struct {
  int32_t ifindex;
  uint64_t count;
} tw_ret_t;

typedef struct {
  int fd;
  int prio;
  atomic_int armed;
  atomic_int stop;
  // The burst that fires it (armTripwire's minFrames within windowNs, set before armed): chatter
  // below that rate never reaches the JS thread at all.
  atomic_int min_frames;
  atomic_llong window_ns;
  atomic_uint arm_drops; // the socket's drop count when armed
  pthread_t thread;
  napi_threadsafe_function tsfn;
  // Evidence: written by the tripwire thread, copied out by tripwireFrames under mu.
  pthread_mutex_t mu;
  tw_evidence_t ev;
  // Source MACs and their moves (tw_source_seen), under mu too.
  tw_source_t src[TW_SOURCES];
  tw_move_t moves[TW_MOVES];
  uint64_t moves_next; // moves ever put; the next goes to slot moves_next % TW_MOVES
  uint64_t moves_read; // moves handed to JS (readTripwireMoves)
  // The unknown-unicast watch (tripwireUnicast): its socket (-1 until the first port), its
  // thread, and its own source MACs (under mu), so that only moves between those ports count.
  int ufd;
  pthread_t uthread;
  tw_source_t usrc[TW_SOURCES];
  // Frames seen (tw_return_seen) and, per interface, how many came back since JS last read them, under mu.
  tw_seen_t seen[TW_SEEN];
  tw_ret_t rets[TW_RET_PORTS];
  uint32_t nrets;
} tripwire_t;

// A source MAC received on another interface than its previous frame: a move, as the bridge's
// FDB learns it (a loop re-delivers its frames on every member). The bridge reports its moves
// through `bridge monitor fdb`, whose lines reached the JS thread ~2.9 ms after a loop's first
// frame, cold or warm, where this thread had the frames within ~1 ms (lab probes, kvm loop,
// session 13): the flap that judges a loop was the verdict's last wait. Every interface is seen
// (the bridge device too, when a frame goes up to the host): JS keeps the moves between ports of
// one bridge (sources/fdb.ts). Direct-mapped: a collision forgets a MAC, never invents a move.
static int tw_source_seen(tripwire_t *tw, tw_source_t *table, const uint8_t *frame, ssize_t n, int ifindex, int64_t mono) {
  if (n < 12) return 0;
  const uint8_t *mac = frame + 6;
  if (mac[0] & 1) return 0; // a group address is no station's
  uint32_t h = 2166136261u;
  for (int i = 0; i < 6; i++) h = (h ^ mac[i]) * 16777619u;
  tw_source_t *s = &table[h % TW_SOURCES];
  int moved = 0;
  if (s->used && memcmp(s->mac, mac, 6) == 0) {
    if (s->ifindex == ifindex) return 0;
    moved = 1;
    tw_move_t *m = &tw->moves[tw->moves_next++ % TW_MOVES];
    m->mono = mono;
    m->ifindex = ifindex;
    memcpy(m->mac, mac, 6);
  } else {
    memcpy(s->mac, mac, 6);
    s->used = 1;
  }
  s->ifindex = ifindex;
  return moved;
}

// A frame received by an interface that received the very same bytes (the first TW_SNAP, and the
// length) within TW_RETURN_NS: it came back. That is what makes a loop a loop, whatever its rate:
// a frame circling a ring arrives again and again, unchanged, where a guest bridging two separate
// LANs forwards frames that never return (by rates alone the two look alike: session 18, a
// one-way macvtap ring under 20k frames/s was never cut). A host repeating one frame unchanged
// (a flood tool, an ARP retry) returns too: the detector asks for more than returns (a guest
// forwarding what its other NIC receives, signature.ts). Keyed by frame and interface, so that the
// copy a macvtap receives after its NIC does is no return of the NIC's. Direct-mapped: a
// collision forgets a frame, never invents a return. The thread reads one frame per
// TW_STORM_READ_NS in a storm: returns are counted among the frames read, not all frames.
static void tw_return_seen(tripwire_t *tw, const uint8_t *frame, ssize_t n, uint32_t len, int ifindex, int64_t mono) {
  if (n < 14) return;
  uint64_t h = 1469598103934665603ULL;
  for (ssize_t i = 0; i < n; i++) h = (h ^ frame[i]) * 1099511628211ULL;
  h = (h ^ len) * 1099511628211ULL;
  h = (h ^ (uint32_t)ifindex) * 1099511628211ULL;
  if (h == 0) h = 1;
  tw_seen_t *s = &tw->seen[h % TW_SEEN];
  int back = s->hash == h && mono - s->mono <= TW_RETURN_NS;
  s->hash = h;
  s->mono = mono;
  if (!back) return;
  for (uint32_t i = 0; i < tw->nrets; i++) {
    if (tw->rets[i].ifindex == ifindex) {
      tw->rets[i].count++;
      return;
    }
  }
  if (tw->nrets < TW_RET_PORTS) tw->rets[tw->nrets++] = (tw_ret_t){ .ifindex = ifindex, .count = 1 };
}

// While a storm rolls through the tail (the head frozen: its onset is kept), the thread reads at
// most one frame per TW_STORM_READ_NS and sleeps between reads; the frames meanwhile are dropped at
// the socket's tiny buffer without waking it. Reading every frame at SCHED_FIFO took ~50% of a core
// on this 2-vCPU VM during a full-speed flood and slowed the flood itself from ~150-250k to ~60k
// frames/s (lab, issue 11), so its port took 2000 / (60k - 20k) s, ~50 ms, to spend its flood
// budget. 2,000 reads/s keeps the tail's 64 newest frames within 32 ms, far inside TW_QUIET_NS
// (tripwire_ring.h): the flood is still seen as one. The tail's times are read times, up to
// TW_STORM_READ_NS after arrival. While armed every frame is read (the burst is counted).
#define TW_STORM_READ_NS 500000L

// One frame into the evidence (tripwire_ring.h), with its wall-clock and monotonic times; returns
// whether the head is frozen (a storm in progress).
static int tripwire_keep(tripwire_t *tw, const uint8_t *buf, ssize_t n, const struct msghdr *mh, const struct sockaddr_ll *sll, int64_t *mono_out) {
  struct timespec ts, mt;
  uint32_t len = (uint32_t)n;
  clock_gettime(CLOCK_REALTIME, &ts);
  clock_gettime(CLOCK_MONOTONIC, &mt);
  int64_t mono = (int64_t)mt.tv_sec * 1000000000LL + mt.tv_nsec;
  *mono_out = mono;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
    if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA && c->cmsg_len >= CMSG_LEN(sizeof(struct tpacket_auxdata))) {
      struct tpacket_auxdata aux;
      memcpy(&aux, CMSG_DATA(c), sizeof aux);
      len = aux.tp_len;
    }
  }
  size_t cap = (size_t)n < TW_SNAP ? (size_t)n : TW_SNAP;
  pthread_mutex_lock(&tw->mu);
  tw_keep(&tw->ev, ts.tv_sec, (int32_t)ts.tv_nsec, mono, buf, cap, len, sll->sll_ifindex, sll->sll_pkttype);
  (void)tw_source_seen(tw, tw->src, buf, n, sll->sll_ifindex, mono);
  tw_return_seen(tw, buf, (ssize_t)cap, len, sll->sll_ifindex, mono);
  int frozen = tw->ev.frozen;
  pthread_mutex_unlock(&tw->mu);
  return frozen;
}

/** Frames the socket dropped since it opened (0 where SO_MEMINFO has no drop count: kernels < 4.12). */
static uint32_t tripwire_drops(int fd) {
  uint32_t mi[SK_MEMINFO_VARS];
  socklen_t ml = sizeof mi;
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &ml) == 0 && ml >= sizeof mi) return mi[SK_MEMINFO_DROPS];
  return 0;
}

// The burst the armed thread counts toward a wake (see armTripwire).
typedef struct {
  int counting;         // armed since the last frame: the counts below are this arm's
  int64_t frames;       // frames read in the current burst
  int64_t from;         // its first frame's monotonic time
  uint32_t from_drops;  // the socket's drop count at the read before that frame
  uint32_t last_drops;  // the socket's drop count at the last read
} tw_burst_t;

// One frame read while armed, at monotonic `mono`: does the burst now hold minFrames within
// windowNs? The socket's buffer holds a frame or two, so the frames of a burst mostly arrive as
// drops, counted by SO_MEMINFO (lock-free): a burst is the frames read plus the drops since the
// read before its first frame (this thread may read late: the drops still count). Drops from
// before the arm are old news.
static int tw_burst_frame(tripwire_t *tw, tw_burst_t *b, int64_t mono) {
  if (!b->counting) b->last_drops = atomic_load(&tw->arm_drops);
  b->counting = 1;
  uint32_t drops = tripwire_drops(tw->fd);
  if (b->frames == 0 || mono - b->from > atomic_load(&tw->window_ns)) {
    b->frames = 0;
    b->from = mono;
    b->from_drops = b->last_drops;
  }
  b->last_drops = drops;
  return ++b->frames + (uint32_t)(drops - b->from_drops) >= atomic_load(&tw->min_frames);
}

static void *tripwire_main(void *arg) {
  tripwire_t *tw = arg;
  uint8_t buf[TW_SNAP];
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
  } ctl;
  struct sockaddr_ll sll;
  struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
  tw_burst_t burst = { 0 };
  if (tw->prio > 0) {
    struct sched_param sp = { .sched_priority = tw->prio };
    // Failure (no CAP_SYS_NICE) leaves the thread at normal priority: slower, not broken.
    (void)sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp);
  }
  while (!atomic_load(&tw->stop)) {
    struct msghdr mh = { .msg_name = &sll, .msg_namelen = sizeof sll, .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.bytes, .msg_controllen = sizeof ctl.bytes };
    ssize_t n = recvmsg(tw->fd, &mh, 0);
    if (n < 0) continue; // EAGAIN every 500 ms (SO_RCVTIMEO) or EINTR: check stop, wait again
    int64_t mono = 0;
    int storm = tripwire_keep(tw, buf, n, &mh, &sll, &mono);
    if (atomic_load(&tw->armed)) {
      // Armed, every frame is read (no storm pause): the pause would hide the burst awaited.
      if (tw_burst_frame(tw, &burst, mono) && atomic_exchange(&tw->armed, 0)) {
        burst = (tw_burst_t){ 0 };
        napi_call_threadsafe_function(tw->tsfn, NULL, napi_tsfn_nonblocking);
      }
      continue;
    }
    burst = (tw_burst_t){ 0 };
    if (storm) {
      struct timespec pause = { .tv_sec = 0, .tv_nsec = TW_STORM_READ_NS };
      nanosleep(&pause, NULL);
    }
  }
  napi_release_threadsafe_function(tw->tsfn, napi_tsfn_release);
  close(tw->fd);
  return NULL;
}

// --- the unknown-unicast watch ---------------------------------------------------------------
//
// A loop through ports the bridge learns nothing on (brport learning off, or ageing_time 0)
// circling one unknown-unicast frame moves no broadcast/multicast counter and no FDB entry, so
// neither the tripwire above nor `bridge monitor fdb` woke the idle sampler for it: it was judged
// over 100 ms idle samples (bench-reaction kvm-nolearn, 101-202 ms, session 16). Its frames
// arrive on those ports as PACKET_OTHERHOST (to a MAC that is not the port's), with the circling
// frame's source MAC on one member, then the other: a move, as in tw_source_seen. A second
// socket (every interface, a filter that accepts OTHERHOST frames of the listed ports only, the
// 14-byte header) read by its own thread: every such move goes into the moves JS reads (the
// detector's flap), and the first one fires the armed tripwire. Legitimate unicast through such
// a port keeps each source MAC on the port it comes in by: no move, no wake. Its reads are paced,
// the frames between two reads dropping at a small buffer before they are cloned: the pause
// after a read doubles from TW_UNICAST_PAUSE_MIN_NS up to TW_UNICAST_PAUSE_MAX_NS while frames
// keep coming without a move (a busy uplink: at most 250 reads a second), and falls back to the
// minimum after a move or a quiet spell (a loop's first frames on a quiet port are read within
// ~0.25 ms; on a busy one within ~2 pauses). Paced at a fixed 0.5 ms, ~20k frames/s each way
// through one learning-off uplink cost the agent 3.4-4.5% of a core against 0.9-1.0% without the
// watch (lab, agent-port-modes). Its own source
// table, so that a broadcast's trip up to the bridge device (a move in the tripwire's table) is
// never taken for one. Without a listed port the socket does not exist (no per-frame cost).
//
// Each read drains the whole queue (one recvmmsg, up to TW_UNICAST_BATCH frames) rather than
// taking one frame. One frame a read from a queue of ~3 (SO_RCVBUF 0) kept the queue full: the
// slot a read freed went to the next frame the kernel handled after it, and at ~120k frames/s a
// port that frame came in by the same uplink read after read (the loop's frames are handled in
// batches, so where the read falls in the two members' alternation is not random). No move came
// for 15-124 ms while the loop ran (lab, session 19, bench kvm-nolearn: 2-4 moves at the onset,
// then 7-30 reads of one ifindex in a row; 1-5 of 6 storms a run went quiet 15-124 ms late).
// Emptied at each read, the queue fills during the pause with the frames as they come, and a
// loop's batch alternates between its members (a move every ~0.3 ms). TW_UNICAST_RCVBUF holds
// ~24 veth frames (fewer of a NIC's larger buffers), all of them taken in one batch; the frames
// past it still drop before they are cloned. Moves recorded per batch stop at
// TW_UNICAST_BATCH_MOVES (a flap needs 3), so a loop does not flood the moves JS reads each tick.
static tripwire_t *tripwire_args(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv);

#define TW_UNICAST_PAUSE_MIN_NS 250000LL
#define TW_UNICAST_PAUSE_MAX_NS 4000000LL
#define TW_UNICAST_MAX 128
#define TW_UNICAST_SNAP 14
// SO_RCVBUF asked for (the kernel doubles it): 20-24 clones of a 60-byte veth frame queued at
// most (lab), fewer of a NIC's page-sized buffers. A drain takes them all (TW_UNICAST_BATCH).
#define TW_UNICAST_RCVBUF 8192
#define TW_UNICAST_BATCH 64
#define TW_UNICAST_BATCH_MOVES 3

static int64_t mono_ns(void) {
  struct timespec mt;
  clock_gettime(CLOCK_MONOTONIC, &mt);
  return (int64_t)mt.tv_sec * 1000000000LL + mt.tv_nsec;
}

static void *tripwire_unicast_main(void *arg) {
  tripwire_t *tw = arg;
  // One batch: the first frame blocking (a quiet port: the loop's first frame wakes it), the
  // rest of the queue without waiting (see above: a read empties the queue).
  uint8_t buf[TW_UNICAST_BATCH][TW_UNICAST_SNAP];
  struct sockaddr_ll sll[TW_UNICAST_BATCH];
  struct iovec iov[TW_UNICAST_BATCH];
  struct mmsghdr msg[TW_UNICAST_BATCH];
  memset(msg, 0, sizeof msg);
  for (int i = 0; i < TW_UNICAST_BATCH; i++) {
    iov[i] = (struct iovec){ .iov_base = buf[i], .iov_len = TW_UNICAST_SNAP };
    msg[i].msg_hdr.msg_name = &sll[i];
    msg[i].msg_hdr.msg_iov = &iov[i];
    msg[i].msg_hdr.msg_iovlen = 1;
  }
  // Named, so that its cost shows on its own (top -H, /proc/PID/task/*/comm).
  (void)pthread_setname_np(pthread_self(), "sb-unicast");
  if (tw->prio > 0) {
    struct sched_param sp = { .sched_priority = tw->prio };
    (void)sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp);
  }
  int64_t pause = TW_UNICAST_PAUSE_MIN_NS;
  while (!atomic_load(&tw->stop)) {
    for (int i = 0; i < TW_UNICAST_BATCH; i++) msg[i].msg_hdr.msg_namelen = sizeof sll[i];
    int64_t asked = mono_ns();
    ssize_t n = recvmsg(tw->ufd, &msg[0].msg_hdr, 0);
    if (n < 0) {
      pause = TW_UNICAST_PAUSE_MIN_NS;
      continue; // EAGAIN every 500 ms (SO_RCVTIMEO) or EINTR: check stop, wait again
    }
    msg[0].msg_len = (unsigned)n;
    int more = recvmmsg(tw->ufd, &msg[1], TW_UNICAST_BATCH - 1, MSG_DONTWAIT, NULL);
    int got = 1 + (more > 0 ? more : 0);
    int64_t mono = mono_ns();
    int moved = 0;
    pthread_mutex_lock(&tw->mu);
    for (int i = 0; i < got && moved < TW_UNICAST_BATCH_MOVES; i++) {
      if (sll[i].sll_pkttype == PACKET_OTHERHOST) moved += tw_source_seen(tw, tw->usrc, buf[i], (ssize_t)msg[i].msg_len, sll[i].sll_ifindex, mono);
    }
    pthread_mutex_unlock(&tw->mu);
    if (moved && atomic_load(&tw->armed) && atomic_exchange(&tw->armed, 0)) napi_call_threadsafe_function(tw->tsfn, NULL, napi_tsfn_nonblocking);
    // Waited longer than the pause for this frame: a quiet port. Otherwise busy, and no move: back off.
    if (moved || mono - asked > pause) pause = TW_UNICAST_PAUSE_MIN_NS;
    else if (pause < TW_UNICAST_PAUSE_MAX_NS) pause *= 2;
    struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)pause };
    nanosleep(&ts, NULL);
  }
  napi_release_threadsafe_function(tw->tsfn, napi_tsfn_release);
  close(tw->ufd);
  return NULL;
}

// The watch's filter: incoming OTHERHOST frames of these ifindexes, TW_UNICAST_SNAP bytes. Returns
// its length (n + 5 instructions; every jump offset stays under 256 for n <= TW_UNICAST_MAX).
static unsigned short unicast_filter(struct sock_filter *code, const int32_t *ifindex, uint32_t n) {
  unsigned short k = 0;
  code[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE));
  code[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OTHERHOST, 0, (uint8_t)(n + 1));
  code[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_IFINDEX));
  for (uint32_t i = 0; i < n; i++) code[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)ifindex[i], (uint8_t)(n - i), 0);
  code[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
  code[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, TW_UNICAST_SNAP);
  return k;
}

// The watch's socket and thread, at the first listed port; 0 or an errno.
static int unicast_start(tripwire_t *tw, struct sock_filter *code, unsigned short len) {
  int rcvbuf = TW_UNICAST_RCVBUF, err;
  struct timeval tv = { .tv_sec = 0, .tv_usec = 500000 };
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
    err = errno;
  } else {
    err = -arm_packet_socket(fd, 0, code, len, 64);
  }
  if (err == 0 && napi_acquire_threadsafe_function(tw->tsfn) != napi_ok) err = ESHUTDOWN;
  if (err != 0) {
    close(fd);
    return err;
  }
  tw->ufd = fd;
  err = pthread_create(&tw->uthread, NULL, tripwire_unicast_main, tw);
  if (err != 0) {
    tw->ufd = -1;
    napi_release_threadsafe_function(tw->tsfn, napi_tsfn_release);
    close(fd);
  }
  return err;
}

// tripwireUnicast(handle, ifindexes): watch these ports' unknown unicast for moves (see above);
// [] stops watching (the socket stays, with a drop-all filter). Returns how many are watched (at
// most TW_UNICAST_MAX, the first ones).
static napi_value js_tripwire_unicast(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  tripwire_t *tw = tripwire_args(env, info, &argc, argv);
  if (tw == NULL) return NULL;
  bool is_array = false;
  uint32_t n = 0;
  if (argc < 2 || napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tripwireUnicast: ifindexes must be an array");
    return NULL;
  }
  napi_get_array_length(env, argv[1], &n);
  if (n > TW_UNICAST_MAX) n = TW_UNICAST_MAX;
  int32_t ifindex[TW_UNICAST_MAX];
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    ifindex[i] = 0;
    napi_get_element(env, argv[1], i, &v);
    napi_get_value_int32(env, v, &ifindex[i]);
  }
  struct sock_filter code[TW_UNICAST_MAX + 5];
  struct sock_filter drop_all[] = { BPF_STMT(BPF_RET | BPF_K, 0) };
  int err = 0;
  if (atomic_load(&tw->stop)) {
    n = 0;
  } else if (n == 0) {
    if (tw->ufd >= 0 && attach_filter(tw->ufd, drop_all, 1) < 0) err = errno;
  } else {
    unsigned short len = unicast_filter(code, ifindex, n);
    if (tw->ufd < 0) err = unicast_start(tw, code, len);
    else if (attach_filter(tw->ufd, code, len) < 0) err = errno;
  }
  if (err != 0) {
    throw_errno(env, err, "tripwireUnicast", "*");
    return NULL;
  }
  napi_create_uint32(env, n, &out);
  return out;
}

static void tripwire_call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  (void)data;
  if (env == NULL || js_cb == NULL) return;
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  napi_call_function(env, undefined, js_cb, 0, NULL, NULL);
}

static void tripwire_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static napi_value js_start_tripwire(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int prio = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  napi_valuetype t;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "startTripwire: onFrame must be a function");
    return NULL;
  }
  if (argc >= 2) napi_get_value_int32(env, argv[1], &prio);
  if (prio < 0 || prio > 99) prio = 0;
  int fd = open_tripwire();
  if (fd < 0) {
    throw_errno(env, -fd, "startTripwire", "*");
    return NULL;
  }
  tripwire_t *tw = calloc(1, sizeof *tw);
  if (tw == NULL) {
    close(fd);
    napi_throw_error(env, "ENOMEM", "startTripwire: out of memory");
    return NULL;
  }
  tw->fd = fd;
  tw->ufd = -1;
  tw->prio = prio;
  pthread_mutex_init(&tw->mu, NULL);
  napi_value name;
  napi_create_string_utf8(env, "stormbreaker-tripwire", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, tripwire_call_js, &tw->tsfn) != napi_ok) {
    close(fd);
    free(tw);
    napi_throw_error(env, "E_TSFN", "startTripwire: cannot create thread-safe function");
    return NULL;
  }
  // The tripwire must never keep the process alive on its own.
  napi_unref_threadsafe_function(env, tw->tsfn);
  int err = pthread_create(&tw->thread, NULL, tripwire_main, tw);
  if (err != 0) {
    napi_release_threadsafe_function(tw->tsfn, napi_tsfn_release);
    close(fd);
    free(tw);
    throw_errno(env, err, "startTripwire", "*");
    return NULL;
  }
  napi_value ext;
  napi_create_external(env, tw, tripwire_finalize, NULL, &ext);
  return ext;
}

// The tripwire handle in argv[0]; *argc in: room in argv, out: arguments given.
static tripwire_t *tripwire_args(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (*argc < 1 || napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tripwire handle expected");
    return NULL;
  }
  return p;
}

static tripwire_t *tripwire_arg(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  return tripwire_args(env, info, &argc, argv);
}

static napi_value js_arm_tripwire(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tripwire_t *tw = tripwire_args(env, info, &argc, argv);
  if (tw == NULL) return NULL;
  int32_t min_frames = 1;
  int64_t window_ns = 0;
  if (argc >= 2) napi_get_value_int32(env, argv[1], &min_frames);
  if (argc >= 3) napi_get_value_int64(env, argv[2], &window_ns);
  atomic_store(&tw->min_frames, min_frames < 1 ? 1 : min_frames);
  atomic_store(&tw->arm_drops, tripwire_drops(tw->fd));
  atomic_store(&tw->window_ns, window_ns < 0 ? 0 : window_ns);
  char byte;
  // Frames queued while disarmed are old news: only a frame after arming may fire.
  for (int i = 0; i < 4096 && recv(tw->fd, &byte, 1, MSG_DONTWAIT | MSG_TRUNC) >= 0; i++) {
  }
  atomic_store(&tw->armed, 1);
  return NULL;
}

static void set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value x;
  napi_create_double(env, v, &x);
  napi_set_named_property(env, obj, key, x);
}

// A ring's frames, oldest first, appended to arr from index *k.
static void ring_out(napi_env env, napi_value arr, uint32_t *k, const tw_ring_t *r, int onset) {
  uint64_t count = r->next < TW_RING ? r->next : TW_RING;
  for (uint64_t j = 0; j < count; j++) {
    const tw_frame_t *f = &r->f[(size_t)((r->next - count + j) % TW_RING)];
    napi_value o, data, b;
    void *dst;
    napi_create_object(env, &o);
    set_num(env, o, "sec", (double)f->sec);
    set_num(env, o, "nsec", (double)f->nsec);
    set_num(env, o, "ifindex", (double)f->ifindex);
    set_num(env, o, "len", (double)f->len);
    set_num(env, o, "pktType", (double)f->pkttype);
    napi_get_boolean(env, onset, &b);
    napi_set_named_property(env, o, "onset", b);
    napi_create_buffer_copy(env, f->caplen, f->data, &dst, &data);
    napi_set_named_property(env, o, "data", data);
    napi_set_element(env, arr, (*k)++, o);
  }
}

// The evidence, oldest first: the frozen head (the storm's onset) then the tail, or the rolling
// head alone. Copied under the lock (the thread waits at most two copies of ~40 KiB); reading
// re-opens the head, so the next storm's onset is kept afresh.
static napi_value js_tripwire_frames(napi_env env, napi_callback_info info) {
  tripwire_t *tw = tripwire_arg(env, info);
  if (tw == NULL) return NULL;
  static tw_ring_t head, tail;
  pthread_mutex_lock(&tw->mu);
  int frozen = tw_take(&tw->ev, &head, &tail);
  pthread_mutex_unlock(&tw->mu);
  napi_value arr;
  uint32_t k = 0;
  napi_create_array(env, &arr);
  ring_out(env, arr, &k, &head, frozen);
  ring_out(env, arr, &k, &tail, 0);
  return arr;
}

// Freeze the evidence's head now (tw_hold): called at a trip, before the capture is taken.
static napi_value js_tripwire_hold(napi_env env, napi_callback_info info) {
  tripwire_t *tw = tripwire_arg(env, info);
  if (tw == NULL) return NULL;
  int64_t mono = mono_ns();
  pthread_mutex_lock(&tw->mu);
  int frozen = tw_hold(&tw->ev, mono);
  pthread_mutex_unlock(&tw->mu);
  napi_value v;
  napi_get_boolean(env, frozen != 0, &v);
  return v;
}

// Frames that came back per interface (tw_return_seen) since the last call, as one flat array
// [ifindex, count, ...]; undefined when none did (it is read every tick).
static napi_value js_tripwire_returns(napi_env env, napi_callback_info info) {
  tripwire_t *tw = tripwire_arg(env, info);
  if (tw == NULL) return NULL;
  static tw_ret_t out[TW_RET_PORTS];
  uint32_t n = 0;
  pthread_mutex_lock(&tw->mu);
  for (uint32_t i = 0; i < tw->nrets; i++) {
    if (tw->rets[i].count == 0) continue;
    out[n++] = tw->rets[i];
    tw->rets[i].count = 0;
  }
  pthread_mutex_unlock(&tw->mu);
  napi_value arr, v;
  if (n == 0) {
    napi_get_undefined(env, &arr);
    return arr;
  }
  napi_create_array_with_length(env, (size_t)n * 2, &arr);
  for (uint32_t i = 0; i < n; i++) {
    napi_create_int32(env, out[i].ifindex, &v);
    napi_set_element(env, arr, 2 * i, v);
    napi_create_double(env, (double)out[i].count, &v);
    napi_set_element(env, arr, 2 * i + 1, v);
  }
  return arr;
}

// The moves since the last call, oldest first, as one flat array [mono, ifindex, mac, ...]
// (mono: CLOCK_MONOTONIC ns as a double, the daemon's clock; mac: "aa:bb:cc:dd:ee:ff"). Moves
// that were overwritten before this read (more than TW_MOVES since the last) are skipped.
// None since the last call: undefined, not an empty array (it is read every tick).
static napi_value js_read_tripwire_moves(napi_env env, napi_callback_info info) {
  tripwire_t *tw = tripwire_arg(env, info);
  if (tw == NULL) return NULL;
  static tw_move_t out[TW_MOVES];
  uint32_t n = 0;
  pthread_mutex_lock(&tw->mu);
  if (tw->moves_next - tw->moves_read > TW_MOVES) tw->moves_read = tw->moves_next - TW_MOVES;
  for (; tw->moves_read < tw->moves_next; tw->moves_read++) out[n++] = tw->moves[tw->moves_read % TW_MOVES];
  pthread_mutex_unlock(&tw->mu);
  napi_value arr, v;
  if (n == 0) {
    napi_get_undefined(env, &arr);
    return arr;
  }
  napi_create_array_with_length(env, (size_t)n * 3, &arr);
  for (uint32_t i = 0; i < n; i++) {
    char mac[18];
    const uint8_t *m = out[i].mac;
    snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    napi_create_double(env, (double)out[i].mono, &v);
    napi_set_element(env, arr, i * 3, v);
    napi_create_int32(env, out[i].ifindex, &v);
    napi_set_element(env, arr, i * 3 + 1, v);
    napi_create_string_latin1(env, mac, 17, &v);
    napi_set_element(env, arr, i * 3 + 2, v);
  }
  return arr;
}

static napi_value js_stop_tripwire(napi_env env, napi_callback_info info) {
  tripwire_t *tw = tripwire_arg(env, info);
  if (tw == NULL) return NULL;
  if (!atomic_exchange(&tw->stop, 1)) {
    atomic_store(&tw->armed, 0);
    // The thread notices within one receive timeout, releases the tsfn and closes the fd;
    // detached so stopping never blocks the JS thread. The unknown-unicast watch's thread likewise.
    pthread_detach(tw->thread);
    if (tw->ufd >= 0) pthread_detach(tw->uthread);
  }
  return NULL;
}

static napi_value js_set_realtime(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int prio = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &prio) != napi_ok || prio < 1 || prio > 99) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "setRealtime: priority must be 1-99");
    return NULL;
  }
  struct sched_param sp = { .sched_priority = prio };
  if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0) {
    throw_errno(env, errno, "setRealtime", "self");
    return NULL;
  }
  return NULL;
}

// --- preflight probe -------------------------------------------------------------------------

#define PROBE_SNAP 256

static int open_probe(uint16_t ethertype, int rcvbuf) {
  // Our own transmissions (PACKET_OUTGOING) never count as an arrival; then the ethertype.
  struct sock_filter by_type[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 2, 0),
    BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ethertype, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, 0),
    BPF_STMT(BPF_RET | BPF_K, PROBE_SNAP),
  };
  int err;
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  // Room for every probe arriving on every port at once; FORCE needs CAP_NET_ADMIN and
  // ignores rmem_max, the plain option is the fallback (capped by rmem_max).
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0) {
    err = -errno;
  } else {
    err = arm_packet_socket(fd, 0, by_type, sizeof by_type / sizeof by_type[0], 4096);
  }
  if (err < 0) {
    close(fd);
    return err;
  }
  return fd;
}

static napi_value js_probe_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  state_t *s;
  uint32_t ethertype = 0;
  int32_t rcvbuf = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&s) != napi_ok) return NULL;
  if (argc < 2 || napi_get_value_uint32(env, argv[0], &ethertype) != napi_ok ||
      ethertype < 0x0600 || ethertype > 0xffff ||
      napi_get_value_int32(env, argv[1], &rcvbuf) != napi_ok || rcvbuf < 4096 || rcvbuf > (64 << 20)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "probeOpen: ethertype must be 0x0600-0xffff, rcvbuf 4 KiB-64 MiB");
    return NULL;
  }
  int fd = open_probe((uint16_t)ethertype, rcvbuf);
  if (fd < 0) {
    throw_errno(env, -fd, "probeOpen", "*");
    return NULL;
  }
  return register_fd(env, s, fd, 0, "*probe", "probeOpen");
}

static napi_value js_probe_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  state_t *s;
  int32_t fd = -1, ifindex = 0;
  void *data = NULL;
  size_t len = 0;
  bool is_buf = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&s) != napi_ok) return NULL;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &ifindex) != napi_ok || ifindex <= 0 ||
      napi_is_buffer(env, argv[2], &is_buf) != napi_ok || !is_buf ||
      napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok || len < 14 || len > 1514) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE",
                          "probeSend: (fd, ifindex > 0, Buffer of 14-1514 bytes) expected");
    return NULL;
  }
  slot_t *slot = find_slot(s, fd);
  if (slot == NULL || strcmp(slot->ifname, "*probe") != 0) {
    throw_code(env, "EBADF", "probeSend: fd %d is not a probe socket", fd);
    return NULL;
  }
  const uint8_t *frame = data;
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = ifindex;
  memcpy(&sll.sll_protocol, frame + 12, 2);
  sll.sll_halen = ETH_ALEN;
  memcpy(sll.sll_addr, frame, ETH_ALEN);
  ssize_t n = sendto(fd, data, len, 0, (struct sockaddr *)&sll, sizeof sll);
  if (n < 0) {
    char name[IF_NAMESIZE] = "?";
    if (if_indextoname((unsigned)ifindex, name) == NULL) strcpy(name, "?");
    throw_errno(env, errno, "probeSend", name);
    return NULL;
  }
  napi_value out;
  napi_create_int32(env, (int32_t)n, &out);
  return out;
}

static napi_value js_probe_recv(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  state_t *s;
  int32_t fd = -1, max = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&s) != napi_ok) return NULL;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &max) != napi_ok || max < 1 || max > 1000000) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "probeRecv: (fd, max 1-1000000) expected");
    return NULL;
  }
  slot_t *slot = find_slot(s, fd);
  if (slot == NULL || strcmp(slot->ifname, "*probe") != 0) {
    throw_code(env, "EBADF", "probeRecv: fd %d is not a probe socket", fd);
    return NULL;
  }
  napi_value arr;
  napi_create_array(env, &arr);
  uint8_t buf[PROBE_SNAP];
  uint32_t count = 0;
  while ((int32_t)count < max) {
    struct sockaddr_ll sll;
    socklen_t sl = sizeof sll;
    ssize_t n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&sll, &sl);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      throw_errno(env, errno, "probeRecv", "*");
      return NULL;
    }
    napi_value o, v;
    napi_create_object(env, &o);
    napi_create_int32(env, sll.sll_ifindex, &v);
    napi_set_named_property(env, o, "ifindex", v);
    napi_create_int32(env, sll.sll_pkttype, &v);
    napi_set_named_property(env, o, "pktType", v);
    napi_create_buffer_copy(env, (size_t)n, buf, NULL, &v);
    napi_set_named_property(env, o, "frame", v);
    napi_set_element(env, arr, count++, o);
  }
  return arr;
}

// Credentials of the peer of a connected unix socket, from the kernel (SO_PEERCRED): the
// control server journals who asked for an override without trusting the client's claim.
static napi_value js_peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "peerCred: fd must be a non-negative integer");
    return NULL;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    throw_errno(env, errno, "peerCred", "socket");
    return NULL;
  }
  napi_value obj, v;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  napi_create_int32(env, (int32_t)cred.pid, &v);
  napi_set_named_property(env, obj, "pid", v);
  napi_create_uint32(env, (uint32_t)cred.uid, &v);
  napi_set_named_property(env, obj, "uid", v);
  napi_create_uint32(env, (uint32_t)cred.gid, &v);
  napi_set_named_property(env, obj, "gid", v);
  return obj;
}

// sd_notify(3) without libsystemd: Node core has no unix datagram sockets (dgram rejects
// AF_UNIX) and spawning systemd-notify costs ~10 ms per call, too much for a watchdog ping
// from the sampling loop. The protocol is one datagram of newline-separated KEY=VALUE
// lines to $NOTIFY_SOCKET; the kernel attaches our credentials (systemd enables
// SO_PASSCRED on its end), which is what NotifyAccess=main checks. A fresh socket per call,
// like libsystemd, so nothing stays open across fork/exec; MSG_DONTWAIT so a wedged
// receiver can never block the JS thread (EAGAIN is thrown instead).
static napi_value js_sd_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  char msg[4096];
  size_t plen = 0, mlen = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], msg, sizeof msg, &mlen) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "sdNotify: (socketPath: string, message: string)");
    return NULL;
  }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  // A path that filled the buffer was truncated: refuse rather than send to a wrong name.
  if (plen < 2 || plen >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) {
    throw_code(env, "EINVAL", "sdNotify: unsupported NOTIFY_SOCKET '%s' (absolute path or @abstract, < %zu bytes)",
               path, sizeof sa.sun_path);
    return NULL;
  }
  if (mlen >= sizeof msg - 1) {
    throw_code(env, "E2BIG", "sdNotify: message longer than %zu bytes", sizeof msg - 2);
    return NULL;
  }
  memcpy(sa.sun_path, path, plen);
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
  if (path[0] == '@') sa.sun_path[0] = '\0';  // abstract: length counts, no trailing NUL
  else salen += 1;                            // filesystem path: include the NUL
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, errno, "sdNotify", "socket");
    return NULL;
  }
  ssize_t n;
  do {
    n = sendto(fd, msg, mlen, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
  } while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) {
    throw_errno(env, err, "sdNotify", path);
    return NULL;
  }
  napi_value r;
  napi_create_int64(env, (int64_t)n, &r);
  return r;
}

// Bridge port state over rtnetlink, synchronously: the kernel applies it in br_set_port_state
// (net/bridge/br_netlink.c br_setport) and br_handle_frame / should_deliver drop frames of a
// disabled port at once, ~0.1-0.4 ms even during a storm, where clearing IFF_UP waits in
// dev_close for RCU grace periods (36-60 ms measured under a storm). Kernel STP refuses it
// (EBUSY), a port without carrier may not leave disabled (ENETDOWN): returned, not thrown, so
// the caller picks its fallback. One socket for the agent's life: no fd churn per shut. The
// receive timeout bounds the wait for the ack (rtnl held by a slow `ip link set down`).
static int rtnl_socket(state_t *s) {
  if (s->rtnl_fd1 > 0) return s->rtnl_fd1 - 1;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -errno;
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
  struct timeval tv = { .tv_sec = 2, .tv_usec = 0 };
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  s->rtnl_fd1 = fd + 1;
  return fd;
}

static int set_bridge_port_state(state_t *s, int ifindex, uint8_t state) {
  int fd = rtnl_socket(s);
  if (fd < 0) return -fd;
  struct {
    struct nlmsghdr nh;
    struct ifinfomsg ifi;
    struct nlattr protinfo;
    struct nlattr brstate;
    uint8_t value;
    uint8_t pad[3];
  } req;
  memset(&req, 0, sizeof req);
  uint32_t seq = ++s->rtnl_seq;
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = RTM_SETLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.nh.nlmsg_seq = seq;
  req.ifi.ifi_family = AF_BRIDGE;
  req.ifi.ifi_index = ifindex;
  req.protinfo.nla_len = NLA_HDRLEN + NLA_ALIGN(NLA_HDRLEN + 1);
  req.protinfo.nla_type = IFLA_PROTINFO | NLA_F_NESTED;
  req.brstate.nla_len = NLA_HDRLEN + 1;
  req.brstate.nla_type = IFLA_BRPORT_STATE;
  req.value = state;
  struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
  ssize_t n;
  do {
    n = sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  // Read until the ack of this request: an ack left over from a request that timed out carries
  // an older sequence number and is skipped.
  char buf[4096] __attribute__((aligned(NLMSG_ALIGNTO)));
  for (;;) {
    do {
      n = recv(fd, buf, sizeof buf, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? ETIMEDOUT : errno;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) return EPROTO;
      const struct nlmsgerr *e = NLMSG_DATA(h);
      return -e->error;
    }
  }
}

static napi_value js_set_bridge_port_state(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  state_t *s = NULL;
  int32_t ifindex = 0, state = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&s) != napi_ok) return NULL;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &ifindex) != napi_ok || ifindex <= 0 ||
      napi_get_value_int32(env, argv[1], &state) != napi_ok || state < BR_STATE_DISABLED || state > BR_STATE_BLOCKING) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "setBridgePortState: (ifindex: positive integer, state: 0..4)");
    return NULL;
  }
  napi_value r;
  napi_create_int32(env, set_bridge_port_state(s, ifindex, (uint8_t)state), &r);
  return r;
}

// preadInts(fds: Int32Array, out: Float64Array, n): for i < n, the decimal integer at the start of
// fds[i] read at offset 0 (a sysfs counter through a kept-open fd), NaN when it holds no digits,
// -errno when the read failed (ENODEV: the interface is gone). The local sysfs source reads three
// counters per port per tick: through fs.readSync each cost ~3.1 µs, ~1 µs of it Node's argument
// checks and the call into C (256 ports, lab, session 17); one call here for all of them.
static napi_value js_pread_ints(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_typedarray_type tf, to;
  size_t nf = 0, no = 0;
  void *df = NULL, *dout = NULL;
  uint32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3 || napi_get_typedarray_info(env, argv[0], &tf, &nf, &df, NULL, NULL) != napi_ok || tf != napi_int32_array ||
      napi_get_typedarray_info(env, argv[1], &to, &no, &dout, NULL, NULL) != napi_ok || to != napi_float64_array ||
      napi_get_value_uint32(env, argv[2], &n) != napi_ok || n > nf || n > no) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "preadInts: (fds: Int32Array, out: Float64Array, n <= both lengths)");
    return NULL;
  }
  const int32_t *fds = df;
  double *out = dout;
  char b[32];
  for (uint32_t i = 0; i < n; i++) {
    ssize_t r = pread(fds[i], b, sizeof b, 0);
    if (r < 0) {
      out[i] = -(double)errno;
      continue;
    }
    // As parseDecimal in agent/sources/sysfs.ts: digits after any leading non-digits, up to the next non-digit.
    double v = 0;
    int digits = 0;
    for (ssize_t k = 0; k < r; k++) {
      char c = b[k];
      if (c >= '0' && c <= '9') {
        v = v * 10 + (c - '0');
        digits++;
      } else if (digits > 0) {
        break;
      }
    }
    out[i] = digits > 0 ? v : NAN;
  }
  return NULL;
}

static void finalize_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  state_t *s = data;
  for (size_t fd = 0; fd < s->cap; fd++) {
    if (s->slots[fd].used) close((int)fd);
  }
  if (s->rtnl_fd1 > 0) close(s->rtnl_fd1 - 1);
  free(s->slots);
  free(s);
}

NAPI_MODULE_INIT() {
  state_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    napi_throw_error(env, "ENOMEM", "packet_stats: out of memory");
    return NULL;
  }
  // Closes every fd still open when the environment (main thread or worker) ends.
  if (napi_set_instance_data(env, s, finalize_state, NULL) != napi_ok) {
    free(s);
    return NULL;
  }
  const struct {
    const char *name;
    napi_callback cb;
  } fns[] = { { "open", js_open },   { "read", js_read },
              { "close", js_close }, { "closeMany", js_close_many }, { "startTripwire", js_start_tripwire },
              { "armTripwire", js_arm_tripwire }, { "stopTripwire", js_stop_tripwire },
              { "tripwireFrames", js_tripwire_frames }, { "readTripwireMoves", js_read_tripwire_moves },
              { "tripwireReturns", js_tripwire_returns }, { "tripwireHold", js_tripwire_hold },
              { "tripwireUnicast", js_tripwire_unicast },
              { "setRealtime", js_set_realtime }, { "probeOpen", js_probe_open },
              { "probeSend", js_probe_send }, { "probeRecv", js_probe_recv }, { "peerCred", js_peer_cred },
              { "sdNotify", js_sd_notify }, { "setBridgePortState", js_set_bridge_port_state },
              { "preadInts", js_pread_ints } };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, s, &fn) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok)
      return NULL;
  }
  return exports;
}
