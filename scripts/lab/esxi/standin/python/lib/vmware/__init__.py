"""Stand-in of ESXi's `vmware` package: only `vmware.vsi` (scripts/lab/esxi/README.md)."""
