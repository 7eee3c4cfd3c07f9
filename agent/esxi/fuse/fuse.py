# stormbreaker ESXi fuse (FUSE_VERSION below). Sent by the agent over its SSH connection to the
# host's own interpreter on stdin (agent/esxi/fuse/program.ts: a fixed `python -c` loader reads
# exactly this text from stdin, checks its SHA-256 and runs it): nothing is written to or executed
# from the host's disk. It reads counters in-process through `vmware.vsi` (the module ESXi's own
# Python tools import), streams compact samples back, and holds the agent's ARMED PLAN: when the
# plan's loop signature appears it cuts by itself, reports what it did, and keeps protecting for a
# lease after the agent's connection is gone, then exits. It decides nothing else: the agent
# journals, restores and reasserts.
#
# Protocol (one line each; the agent's parser is agent/esxi/fuse/lines.ts):
#   agent -> fuse (stdin, JSON):  {"op":"plan", ...}  {"op":"lease"}  {"op":"ack","ids":[...]}
#                                 {"op":"stop"}
#   fuse -> agent (stdout):       H <version> <pid> <instance>          ready: vsi imported
#                                 N <json>                             cannot arm (reason)
#                                 A <json>                             plan armed
#                                 S <t_us> <v> <v> ...                 one sample (plan's order)
#                                 C <json>                             a cut (or a dry-run cut; outcome
#                                                                      "cutting" when its call starts)
#                                 R <json>                             a cut of an earlier fuse, replayed
#                                                                      (outcome "cutting": it ended first)
#                                 X <json>                             exit (reason)
# Sample values per watched item, in the plan's order (6 each): a pNIC gives rxpkt txpkt
# rxbrdcast rxmltcast txbrdcast txmltcast; a port gives pktsRx pktsTx pktsRxBroadcast
# pktsRxMulticast pktsTxBroadcast pktsTxMulticast ('-' when unreadable). Version 2 added the tx
# broadcast/multicast pair: the agent judges a flood leaving by an uplink (egress) on it.
#
# Batching (version 3). Every sample is read on time and every one is sent, but at rest they leave
# in batches, one write every plan `batchMs`: the agent's ssh, its event loop and its detector then
# wake once per batch instead of once per sample (at 66 samples/s that was most of the agent's cost
# per host). A sample in which any item is warm (rx broadcast+multicast >= `warmPps`, or, for an
# item whose rx broadcast counter reads 0 (a driver that counts none: the agent rates its total
# rx), total rx >= `warmRxPps`; the agent's falling edges) leaves at once with everything buffered
# before it, and so does every event: the agent sees a storm's first hot sample as soon as before.
#
# The cut call (version 4) starts at real-time priority (SCHED_FIFO 10) where the host allows it:
# a storm swamps the host's CPUs, and on the stand-in the same `vim-cmd` took 1-1.7 s at normal
# priority against 10-250 ms at SCHED_FIFO. Where the interpreter or the host refuses it, the call
# starts at normal priority. On a real ESXi host `vim-cmd` asks hostd, whose priority is not ours:
# whether this helps there is unmeasured.
#
# Burst sampling (version 5). While any watched item is warm (the same test that sends a sample at
# once) or any port is part-way through its hold, the next sample is read `burstMs` after this one
# instead of `sampleMs`: a storm's `hold` hot samples then take hold x burstMs, not hold x sampleMs
# (on the stand-in, 15 ms samples put ~30 ms of pure waiting into each decision). At rest nothing is
# warm, so the rest period, the batching and the samples/s are unchanged. The signature is not
# loosened: still `hold` consecutive hot samples on >= minHotPorts ports, each rate measured over
# its own interval; a one-port burst never cuts.
#
# Cut intent and call time (version 6). A cut's `cutting` event is written to the events file before its call
# starts, and its result after it ends (same id). A fuse killed while the call runs (the call, its
# child, may still land) leaves the `cutting` line: the next fuse replays each id's LAST line, so
# the agent hears of a cut whose result nobody reported and journals it from what the host shows.
# A result's `ms` counts from before the spawn (version 5 started it after posix_spawn returned),
# and `spawnMs` is the part the fuse spent in the spawn itself.
#
# Safety, enforced HERE whatever the plan says: a port whose status says clientType 3 (a vmkernel
# NIC) or whose port group is in the plan's protected list is never cut; at most `budget` cuts
# per arming; dry-run reports and cuts nothing; a fuse that another fuse superseded (the owner
# file names someone else) cuts nothing and exits.
import json
import os
import signal
import sys
import time

FUSE_VERSION = 6
CLIENT_VMK = 3
OWNER = "stormbreaker-fuse.owner"
EVENTS = "stormbreaker-fuse.events"


def now_us():
    return int(time.monotonic() * 1e6)


class Out:
    """Non-blocking stdout: a gone or stuck agent must never stall the sampler. Samples that do
    not fit are dropped (counted); events are kept and retried until written."""

    def __init__(self):
        os.set_blocking(1, False)
        self.pending = b""
        self.dropped = 0
        self.broken = False
        self.batch = []  # sample lines not yet written (at rest)
        self.batch_us = 0  # when the oldest of them was read

    def _write(self, data):
        if self.broken:
            return False
        try:
            n = os.write(1, data)
        except BlockingIOError:
            return False
        except OSError:
            self.broken = True
            return False
        if n < len(data):
            self.pending = data[n:] + self.pending
        return True

    def flush(self):
        if self.pending:
            p, self.pending = self.pending, b""
            if not self._write(p):
                self.pending = p + self.pending
        return not self.pending

    def sample(self, line, t_us, now, batch_us):
        """Buffer one sample line; write the batch when `now` (a warm sample) or when its oldest
        sample is batch_us old."""
        if not self.batch:
            self.batch_us = t_us
        self.batch.append(line)
        if now or t_us - self.batch_us >= batch_us:
            self.send_batch()

    def send_batch(self):
        if not self.batch:
            return
        data, n = b"".join(self.batch), len(self.batch)
        self.batch = []
        if not self.flush() or not self._write(data):
            self.dropped += n

    def event(self, kind, obj):
        self.send_batch()  # samples read before the event reach the agent before it
        self.pending += (kind + " " + json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self.flush()


class Fuse:
    def __init__(self, vsi, out, state_dir):
        self.vsi = vsi
        self.out = out
        self.dir = state_dir
        self.instance = "%d-%d" % (os.getpid(), int(time.time() * 1000))
        self.plan = None
        self.paths = []
        self.prev = None
        self.hot_runs = {}
        self.cuts = 0
        self.seq = 0
        self.last_cut_us = 0
        self.lease_until = None
        self.stdin_open = True
        self.inbuf = b""
        self.running = None

    # --- owner file and events: the only things written (data in the state dir, never code) ---
    def claim(self):
        tmp = os.path.join(self.dir, ".%s.%s" % (OWNER, self.instance))
        with open(tmp, "w") as f:
            f.write(self.instance)
        os.replace(tmp, os.path.join(self.dir, OWNER))

    def owner(self):
        try:
            with open(os.path.join(self.dir, OWNER)) as f:
                return f.read().strip()
        except OSError:
            return None

    def replay(self):
        try:
            with open(os.path.join(self.dir, EVENTS)) as f:
                lines = f.read().splitlines()
        except OSError:
            return
        last = {}  # per cut id, its last line: a `cutting` record followed by its result is the result
        for l in lines:
            try:
                ev = json.loads(l)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("instance") != self.instance:
                last.pop(str(ev.get("id")), None)
                last[str(ev.get("id"))] = ev
        for ev in last.values():
            self.out.event("R", ev)

    def record(self, ev):
        with open(os.path.join(self.dir, EVENTS), "a") as f:
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")

    def ack(self, ids):
        path = os.path.join(self.dir, EVENTS)
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            return
        keep = [l for l in lines if not any(('"id":"%s"' % i) in l for i in ids)]
        tmp = path + "." + self.instance
        with open(tmp, "w") as f:
            f.write("".join(l + "\n" for l in keep))
        os.replace(tmp, path)

    # --- plan -------------------------------------------------------------------------------------
    def arm(self, p):
        watch = p.get("watch") or []
        paths = []
        for w in watch:
            if w.get("kind") == "pnic":
                paths.append(("pnic", "/net/pNics/%s/stats" % w["id"]))
            else:
                paths.append(("port", "/net/portsets/%s/ports/%s/stats" % (w["portset"], w["id"])))
        for kind, path in paths:
            self.vsi.get(path)  # an unknown node fails the arming, not a sample later
        self.plan = p
        self.paths = paths
        self.prev = None
        self.hot_runs = {}
        self.cuts = 0
        self.refused = set()
        self.lease_until = now_us() + int(p["leaseMs"]) * 1000
        self.out.event("A", {"instance": self.instance, "version": FUSE_VERSION, "watch": len(paths),
                              "cutList": len(p.get("cutList") or []), "dryRun": bool(p.get("dryRun")),
                              "budget": int(p.get("budget", 0))})

    def read(self):
        vals = []
        for kind, path in self.paths:
            try:
                s = self.vsi.get(path)
                if kind == "pnic":
                    vals.append((s["rxpkt"], s["txpkt"], s["rxbrdcast"], s["rxmltcast"], s.get("txbrdcast"), s.get("txmltcast")))
                else:
                    # The tx pair is for the agent's egress view only: a node without it still streams.
                    vals.append((s["pktsRx"], s["pktsTx"], s["pktsRxBroadcast"], s["pktsRxMulticast"],
                                 s.get("pktsTxBroadcast"), s.get("pktsTxMulticast")))
            except Exception:  # noqa: BLE001 - a failed read drops that item's sample, never cuts
                vals.append(None)
        return vals

    def warm(self, t_us, vals):
        """Is any watched item (pNIC or port) at or over the plan's warm rates since the previous
        sample? Such a sample is sent at once, not batched."""
        p = self.plan
        if self.prev is None:
            return True
        dt = (t_us - self.prev[0]) / 1e6
        if dt <= 0:
            return True
        wf, wr = p.get("warmPps", 0) * dt, p.get("warmRxPps", 0) * dt
        for a, b in zip(self.prev[1], vals):
            if a is None or b is None:
                continue
            if wf > 0 and (b[2] - a[2]) + (b[3] - a[3]) >= wf:
                return True
            # Total rx only where broadcast is not counted: a busy uplink's unicast is not a storm.
            if wr > 0 and not b[2] and b[0] - a[0] >= wr:
                return True
        return False

    def judge(self, t_us, vals):
        """Loop signature: >= minHotPorts watched PORTS (not pNICs) whose broadcast+multicast rx
        rate is >= pps, for `hold` consecutive samples. Returns the hot port ids."""
        p = self.plan
        prev, self.prev = self.prev, (t_us, vals)
        if prev is None:
            return []
        dt = (t_us - prev[0]) / 1e6
        if dt <= 0:
            return []
        hot = []
        for i, w in enumerate(p["watch"]):
            if w.get("kind") == "pnic":
                continue
            a, b = prev[1][i], vals[i]
            key = str(w["id"])
            if a is None or b is None or b[2] < a[2] or b[3] < a[3]:
                self.hot_runs[key] = 0  # missing data or a counter reset: never a storm
                continue
            pps = ((b[2] - a[2]) + (b[3] - a[3])) / dt
            self.hot_runs[key] = self.hot_runs.get(key, 0) + 1 if pps >= p["pps"] else 0
            if self.hot_runs[key] >= p["hold"]:
                hot.append(key)
        return hot if len(hot) >= p.get("minHotPorts", 2) else []

    def next_period(self, warm):
        """Seconds to the next sample: burstMs while warm or while a port's hold is running (v5),
        else sampleMs. Both clamped to 5-100 ms."""
        p = self.plan
        ms = p["sampleMs"]
        burst = p.get("burstMs", 0)
        if burst and burst < ms and (warm or any(self.hot_runs.values())):
            ms = burst
        return max(0.005, min(0.1, ms / 1000.0))

    def refuse(self, c, ps):
        """Why this cut entry must not be cut (None: it may). Checked against the host's own status."""
        if any(str(c.get("portId")) == str(v) for v in self.plan.get("protectedPorts") or []):
            return "protected port"
        try:
            st = self.vsi.get("/net/portsets/%s/ports/%s/status" % (ps, c["portId"]))
        except Exception as e:  # noqa: BLE001
            return "status unreadable: %s" % e
        if st.get("clientType") == CLIENT_VMK:
            return "vmkernel port"
        if st.get("portCfg") in (self.plan.get("protectedPortgroups") or []):
            return "protected port group %s" % st.get("portCfg")
        return None

    def cut(self, t_us, hot):
        p = self.plan
        if self.running is not None or self.cuts >= int(p.get("budget", 0)) or t_us - self.last_cut_us < int(p.get("settleMs", 100)) * 1000:
            return
        if self.owner() != self.instance:
            return self.exit("superseded")
        for c in p.get("cutList") or []:
            if str(c.get("portId")) not in hot:
                continue
            if str(c.get("portId")) in self.refused:
                continue
            why = self.refuse(c, c.get("portset", "vSwitch0"))
            self.seq += 1
            ev = {"id": "%s.%d" % (self.instance, self.seq), "instance": self.instance, "version": FUSE_VERSION,
                  "port": c.get("port"), "portId": str(c.get("portId")), "hot": hot, "tUs": t_us,
                  "wallMs": int(time.time() * 1000), "dryRun": bool(p.get("dryRun"))}
            if why is not None:
                self.refused.add(str(c.get("portId")))  # reported once per arming, not per sample
                ev.update(outcome="refused", why=why)
                self.out.event("C", ev)
                continue
            self.cuts += 1
            self.last_cut_us = t_us
            ev["argv"] = c["argv"]
            if p.get("dryRun"):
                ev["outcome"] = "dry-run"
                self.out.event("C", ev)
            else:
                # Recorded before the call starts (version 6): a fuse killed while its call runs
                # leaves this line, and the next fuse replays it; the agent then asks the host
                # whether the vNIC is disconnected. Said at once (the call may take long): the
                # agent then waits for this cut instead of sending its own.
                self.record(dict(ev, outcome="cutting"))
                self.out.event("C", dict(ev, outcome="cutting"))
                # One spawn, not waited for here: sampling goes on while the cut runs (reap()).
                # The call's time (ms) counts from before the spawn: posix_spawn returns only
                # once the child has exec'd, and under a storm the fuse (normal priority) then
                # waits for a CPU behind the real-time child; on the stand-in that took up to
                # ~130 ms, which the time taken after the spawn left out. spawnMs says how much.
                t0 = time.monotonic()
                pid = start(c["argv"])
                ev["spawnMs"] = round((time.monotonic() - t0) * 1000, 2)
                self.running = (pid, t0, float(p.get("cutTimeoutMs", 5000)) / 1000, ev)
            return

    def reap(self):
        """Finish a running cut: its exit status and time go into the event, the journal file and out."""
        pid, t0, timeout_s, ev = self.running
        rc = None
        if pid is None:
            rc = 127
        else:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = exit_code(status)
            elif time.monotonic() - t0 > timeout_s:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                rc = -9
        if rc is None:
            return
        self.running = None
        ev.update(outcome="cut" if rc == 0 else "failed", rc=rc, ms=round((time.monotonic() - t0) * 1000, 2))
        self.record(ev)
        self.out.event("C", ev)

    # --- agent input ------------------------------------------------------------------------------
    def on_line(self, line):
        try:
            msg = json.loads(line)
            op = msg.get("op")
        except (ValueError, AttributeError):
            return self.out.event("N", {"why": "bad input line"})
        if op == "plan":
            try:
                self.arm(msg)
            except Exception as e:  # noqa: BLE001
                self.out.event("N", {"why": "plan refused: %s" % e})
        elif op == "lease" and self.plan:
            self.lease_until = now_us() + int(self.plan["leaseMs"]) * 1000
        elif op == "ack":
            self.ack([str(i) for i in msg.get("ids") or []])
        elif op == "stop":
            self.exit("stopped by the agent")

    def poll_stdin(self):
        import select
        while self.stdin_open and select.select([0], [], [], 0)[0]:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.stdin_open = False  # the agent's connection is gone: protect until the lease ends
                break
            self.inbuf += chunk
            while b"\n" in self.inbuf:
                line, self.inbuf = self.inbuf.split(b"\n", 1)
                if line.strip():
                    self.on_line(line.decode("utf-8", "replace"))

    def exit(self, why):
        while self.running is not None:  # a cut in flight is finished and reported, not orphaned
            self.reap()
            time.sleep(0.002)
        self.out.event("X", {"why": why, "cuts": self.cuts, "droppedSamples": self.out.dropped})  # sends the batch first
        self.out.flush()
        os._exit(0)

    def run(self):
        period = 0.015
        next_t = time.monotonic()
        last_owner_check = 0
        while True:
            self.poll_stdin()
            t_us = now_us()
            if self.plan is not None:
                if t_us > self.lease_until:
                    self.exit("lease expired" + ("" if self.stdin_open else " after the agent's connection closed"))
                vals = self.read()
                line = ("S %d %s\n" % (t_us, " ".join(" ".join("-" if x is None else str(x) for x in v) if v else "- - - - - -" for v in vals))).encode()
                batch_us = int(self.plan.get("batchMs", 0)) * 1000
                warm = self.warm(t_us, vals)
                self.out.sample(line, t_us, batch_us <= 0 or warm, batch_us)
                hot = self.judge(t_us, vals)
                period = self.next_period(warm)
                if self.running is not None:
                    self.reap()
                if hot:
                    self.cut(t_us, hot)
                if t_us - last_owner_check > 250000:
                    last_owner_check = t_us
                    if self.owner() != self.instance:
                        self.exit("superseded")
            elif not self.stdin_open:
                self.exit("no plan and the agent's connection closed")
            self.out.flush()
            next_t += period
            d = next_t - time.monotonic()
            if d > 0:
                time.sleep(d)
            else:
                next_t = time.monotonic()


def start(argv):
    """Start one host command (argv, never a shell string), stdio to /dev/null: its pid, or None.
    At SCHED_FIFO 10 where allowed (see the header); `scheduler` is posix_spawn's keyword (3.8+)."""
    null = os.open(os.devnull, os.O_RDWR)
    fa = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]
    try:
        try:
            return os.posix_spawnp(argv[0], argv, os.environ, file_actions=fa,
                                   scheduler=(os.SCHED_FIFO, os.sched_param(10)))
        except (AttributeError, NotImplementedError, TypeError, OSError):
            return os.posix_spawnp(argv[0], argv, os.environ, file_actions=fa)
    except OSError:
        return None
    finally:
        os.close(null)


def exit_code(status):
    # os.waitstatus_to_exitcode is Python 3.9+; ESXi 7/8 ship 3.8.
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)


def main(state_dir):
    # The agent's connection may vanish: no SIGHUP/SIGPIPE death; the lease decides when to go.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    out = Out()
    try:
        import vmware.vsi as vsi
    except Exception as e:  # noqa: BLE001
        out.event("N", {"why": "import vmware.vsi failed: %s" % e, "version": FUSE_VERSION})
        out.flush()
        os._exit(3)
    fuse = Fuse(vsi, out, state_dir)
    fuse.claim()
    out.pending += ("H %d %d %s\n" % (FUSE_VERSION, os.getpid(), fuse.instance)).encode()
    fuse.replay()
    out.flush()
    fuse.run()


if __name__ == "__fuse__":
    # The loader's argv: -c <bytes> <sha256> <state dir>. The project's stand-in host sets
    # STORMBREAKER_FUSE_DIR (its sshd's SetEnv) so each lab keeps its own owner and events files;
    # ESXi's sshd sets no such variable.
    main(os.environ.get("STORMBREAKER_FUSE_DIR") or (sys.argv[3] if len(sys.argv) > 3 else "/tmp"))
