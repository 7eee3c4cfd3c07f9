// fuse.py's signature and cut choice, with a fake vmware.vsi (the host's real module is not here):
// the program runs in the machine's python3 with its main() not started, fed counter values.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { fusePath } from '../../agent/esxi/fuse/program.js';

/** Run a python snippet with fuse.py's definitions loaded (not run) and a fake vsi; returns its JSON output. */
function py(body: string): unknown {
  const harness = `
import json, sys
g = {"__name__": "fuse_under_test"}
exec(compile(open(${JSON.stringify(fusePath())}).read(), "fuse.py", "exec"), g)
Fuse = g["Fuse"]
class FakeOut:
    def __init__(self): self.events = []; self.dropped = 0
    def event(self, kind, obj): self.events.append([kind, obj])
    def sample(self, line): pass
    def flush(self): return True
class FakeVsi:
    def __init__(self): self.stats = {}; self.status = {}
    def get(self, path):
        if path.endswith("/status"): return self.status[path.split("/")[5]]
        return self.stats[path]
vsi = FakeVsi(); out = FakeOut()
PORT = "/net/portsets/vSwitch0/ports/%s/stats"
def port(pid, bc): vsi.stats[PORT % pid] = {"pktsRx": bc, "pktsTx": 0, "pktsRxBroadcast": bc, "pktsRxMulticast": 0}
for pid in ("10", "11", "12"): port(pid, 0); vsi.status[pid] = {"clientName": "vm.eth", "clientType": 5, "portCfg": "VM Network"}
f = Fuse(vsi, out, "/nonexistent")
plan = {"sampleMs": 10, "leaseMs": 5000, "pps": 1000, "hold": 2, "minHotPorts": 2, "settleMs": 0, "budget": 1, "dryRun": True,
        "watch": [{"kind": "port", "portset": "vSwitch0", "id": i} for i in ("10", "11", "12")],
        "cutList": [{"port": "p%s" % i, "portId": i, "portset": "vSwitch0", "argv": ["true"]} for i in ("12", "11", "10")],
        "protectedPortgroups": [], "protectedPorts": []}
f.arm(plan)
f.owner = lambda: f.instance
def step(t_ms, bcs):
    for pid, bc in zip(("10", "11", "12"), bcs): port(pid, bc)
    hot = f.judge(t_ms * 1000, f.read())
    if hot: f.cut(t_ms * 1000, hot)
    return hot
${body}
`;
  return JSON.parse(execFileSync('python3', ['-c', harness], { encoding: 'utf8', timeout: 10_000 }));
}

describe('fuse.py signature', () => {
  it('two ports hot for `hold` samples trip it; the first hot entry of the cut list is chosen', () => {
    const r = py(`
res = [step(0, (0, 0, 0)), step(10, (50, 50, 0)), step(20, (100, 100, 0))]
print(json.dumps({"res": res, "cuts": [e for k, e in out.events if k == "C"]}))`) as { res: string[][]; cuts: Array<{ port: string; outcome: string; hot: string[] }> };
    expect(r.res).toEqual([[], [], ['10', '11']]);
    expect(r.cuts).toHaveLength(1);
    expect(r.cuts[0]).toMatchObject({ port: 'p11', outcome: 'dry-run', hot: ['10', '11'] });
  });

  it('one hot port is not a loop; a counter going backwards is a reset, never a storm', () => {
    const r = py(`
a = [step(0, (0, 0, 0)), step(10, (50, 0, 0)), step(20, (100, 0, 0)), step(30, (150, 0, 0))]
b = [step(40, (200, 50, 0)), step(50, (0, 100, 0)), step(60, (50, 150, 0))]
print(json.dumps({"a": a, "b": b, "events": len(out.events)}))`) as { a: string[][]; b: string[][]; events: number };
    expect(r.a).toEqual([[], [], [], []]);
    expect(r.b).toEqual([[], [], []]);
  });

  it('an unreadable port drops its sample and restarts its hold; the budget caps cuts', () => {
    const r = py(`
step(0, (0, 0, 0)); step(10, (50, 50, 0))
del vsi.stats[PORT % "10"]
hot_missing = f.judge(20000, f.read())
port("10", 100)
after = [step(30, (150, 150, 0)), step(40, (200, 200, 0)), step(50, (250, 250, 0))]
print(json.dumps({"missing": hot_missing, "after": after, "cuts": len([1 for k, e in out.events if k == "C"])}))`) as { missing: string[]; after: string[][]; cuts: number };
    expect(r.missing).toEqual([]);
    // Two readings make the first rate after the gap, and `hold` is 2 rates: hot again at the third.
    expect(r.after).toEqual([[], [], ['10', '11']]);
    expect(r.cuts).toBe(1); // budget 1
  });
});
