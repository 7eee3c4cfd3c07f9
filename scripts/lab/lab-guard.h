/*
 * What the lab's C tools (flood.c, observe-ts.c) check before they touch a socket: the named
 * network namespace they run in (they refuse to run outside one named "sb..."), interface names,
 * and numbers on the command line. One copy, included by each (static: one program each).
 */
#ifndef SB_LAB_GUARD_H
#define SB_LAB_GUARD_H
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Name of the named netns (/run/netns) this process is in, or 0 if none. */
static int current_netns(char *out, size_t n) {
  struct stat me, st;
  if (stat("/proc/self/ns/net", &me) != 0) return 0;
  DIR *d = opendir("/run/netns");
  if (!d) return 0;
  struct dirent *e;
  int found = 0;
  char path[512];
  while (!found && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/run/netns/%s", e->d_name);
    if (stat(path, &st) == 0 && st.st_dev == me.st_dev && st.st_ino == me.st_ino) {
      snprintf(out, n, "%s", e->d_name);
      found = 1;
    }
  }
  closedir(d);
  return found;
}

static int valid_ifname(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n >= IFNAMSIZ) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("_.:@-", c))) return 0;
  }
  return 1;
}

/* A number and nothing else after it. */
static int parse_num(const char *s, double *v) {
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  return errno == 0 && end != s && *end == '\0';
}

#endif
