"""Stand-in ESXi tools (esxcli, vsish, vim-cmd) for the stormbreaker lab; see ../../README.md."""
