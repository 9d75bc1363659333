/* The server core's speed while a row is measured (bench/compare.sh, PIN=1).
 *
 * Every PERIOD milliseconds it times a fixed run of eight independent xorshift chains,
 * in registers only, and prints "realtime_ns duration_ns". It runs under SCHED_FIFO, so
 * no task of the benchmark queues ahead of it: its time is how fast the core executes,
 * not how busy it is. On a busy core the run takes one steady time, except in bursts of
 * one to a few seconds in which it takes about 1.4 times as long, with no steal counted:
 * the core is slowed from outside the guest. A run is a few microseconds every PERIOD
 * (default 50 ms), well under 0.1% of the core.
 *
 * Usage: probe [PERIOD_MS] [ITERATIONS]   (defaults: 50, 4000) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t now_ns(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

#define XORSHIFT(x) ((x) ^= (x) << 13, (x) ^= (x) >> 7, (x) ^= (x) << 17)

int main(int argc, char **argv) {
  long period_ms = argc > 1 ? atol(argv[1]) : 50;
  long iterations = argc > 2 ? atol(argv[2]) : 4000;
  struct timespec nap = {period_ms / 1000, (period_ms % 1000) * 1000000L};
  volatile uint64_t sink = 0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (;;) {
    uint64_t a = 1, b = 2, c = 3, d = 4, e = 5, f = 6, g = 7, h = 8;
    uint64_t start = now_ns(CLOCK_MONOTONIC);
    for (long i = 0; i < iterations; i++) {
      XORSHIFT(a); XORSHIFT(b); XORSHIFT(c); XORSHIFT(d);
      XORSHIFT(e); XORSHIFT(f); XORSHIFT(g); XORSHIFT(h);
    }
    uint64_t took = now_ns(CLOCK_MONOTONIC) - start;
    sink += a + b + c + d + e + f + g + h;
    if (printf("%llu %llu\n", (unsigned long long)now_ns(CLOCK_REALTIME), (unsigned long long)took) < 0) return 1;
    nanosleep(&nap, NULL);
  }
}
