{
  "targets": [
    {
      "target_name": "packet_stats",
      "sources": ["native/packet_stats.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
