"""`vsish -pe get /net/pNics/vmnicN/stats` stand-in, in the layout of
test/fixtures/esxcli/vsish-pnic-stats_intel-mfd.txt (Intel mfd-network-adapter, MIT).

The capture shows the "Python mode is deprecated" banner as the first line, before "{". The
Intel code reads vsish's output with stderr merged, and a deprecation notice is the kind of text
a tool writes to stderr, so the stand-in writes the banner to STDERR and the body to stdout: a
caller that merges them sees exactly the capture, one that does not sees a clean body. Which
stream the real vsish uses is not shown by the capture (an assumption, see README).

Members with no Linux counterpart are left out rather than invented: the capture's intrxpkt,
inttxpkt, intrxdrp, inttxdrp. "hw" (driver-private text) carries the veth's real totals in the
capture's "rxq0: totalPkts=N totalBytes=N" form.
"""
import sys

from . import fmt, state
from .esxcli import pnic_counters
from .state import StandinError

BANNER = "main():Python mode is deprecated and will be removed in future releases. You can use pyvsilib instead."

KEYS = (
    ("rxpkt", "rx_packets"), ("txpkt", "tx_packets"), ("rxbytes", "rx_bytes"), ("txbytes", "tx_bytes"),
    ("rxerr", "rx_errors"), ("txerr", "tx_errors"), ("rxdrp", "rx_dropped"), ("txdrp", "tx_dropped"),
    ("rxmltcast", "rx_mc"), ("rxbrdcast", "rx_bc"), ("txmltcast", "tx_mc"), ("txbrdcast", "tx_bc"),
    ("col", "collisions"), ("rxlgterr", "rx_length_errors"), ("rxoverr", "rx_over_errors"),
    ("rxcrcerr", "rx_crc_errors"), ("rxfrmerr", "rx_frame_errors"), ("rxfifoerr", "rx_fifo_errors"),
    ("rxmisserr", "rx_missed_errors"), ("txaborterr", "tx_aborted_errors"), ("txcarerr", "tx_carrier_errors"),
    ("txfifoerr", "tx_fifo_errors"), ("txhearterr", "tx_heartbeat_errors"), ("txwinerr", "tx_window_errors"),
)


def pnic_stats(inv, name):
    nic = state.nic(inv, name)
    if nic is None:
        # Not from a capture: vsish reports a missing node in its own words; this is the form.
        raise StandinError(f"VSISHCmdGetInt():Get failed: Not found: /net/pNics/{name}/stats")
    c = pnic_counters(inv, nic)
    hw = (
        "\n"
        f"txq0: totalPkts={c['tx_packets']} totalBytes={c['tx_bytes']}\n"
        f"rxq0: totalPkts={c['rx_packets']} totalBytes={c['rx_bytes']}\n"
    )
    pairs = [("dumsw", "")] + [(k, c[src]) for k, src in KEYS] + [("hw", hw)]
    return fmt.vsish_python(pairs)


def main(argv):
    try:
        if len(argv) != 3 or argv[0] not in ("-pe", "-ep") or argv[1] != "get":
            raise StandinError("vsish stand-in: only `vsish -pe get /net/pNics/<vmnic>/stats` is answered")
        parts = argv[2].rstrip("/").split("/")
        if len(parts) != 5 or parts[:3] != ["", "net", "pNics"] or parts[4] != "stats" or not parts[3]:
            raise StandinError(f"VSISHCmdGetInt():Get failed: Not found: {argv[2]}")
        inv = state.load()
        body = pnic_stats(inv, parts[3])
    except StandinError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(BANNER, file=sys.stderr, flush=True)
    sys.stdout.write(body)
    return 0

