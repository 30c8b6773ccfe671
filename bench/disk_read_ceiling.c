// The disk's own ceiling for the warm1g scenario: reads FILE front to back through one
// io_uring ring with QD reads of BS bytes in flight, O_DIRECT unless a fourth argument
// is given (then through the page cache), and prints MiB/s. No CRC, no socket: what tagd's
// disk path could reach at best on this machine (docs/benchmarks.md, "Warm large hits,
// third pass").
//   cc -O2 -o /tmp/disk_read_ceiling bench/disk_read_ceiling.c -luring
//   /tmp/disk_read_ceiling /var/tmp/1g.bin 1048576 4 [buffered]
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s FILE BLOCK_BYTES IN_FLIGHT [buffered]\n", argv[0]);
    return 2;
  }
  const size_t bs = strtoul(argv[2], NULL, 10);
  const int qd = atoi(argv[3]);
  const int fd = open(argv[1], O_RDONLY | (argc > 4 ? 0 : O_DIRECT));
  if (fd < 0 || bs == 0 || bs % 4096 != 0 || qd <= 0 || qd > 256) {
    fprintf(stderr, "cannot open %s, or BLOCK_BYTES not a multiple of 4096, or IN_FLIGHT not 1..256\n", argv[1]);
    return 2;
  }
  const off_t size = lseek(fd, 0, SEEK_END);
  struct io_uring ring;
  int rc = io_uring_queue_init(256, &ring, 0);
  char* buf = NULL;
  if (rc < 0 || posix_memalign((void**)&buf, 4096, bs * (size_t)qd) != 0) {
    fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-rc));
    return 1;
  }
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  off_t next = 0;
  int inflight = 0;
  long long done = 0;
  while (next < size || inflight) {
    while (inflight < qd && next < size) {
      struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      const int slot = (int)((next / (off_t)bs) % qd);
      io_uring_prep_read(sqe, fd, buf + (size_t)slot * bs, (unsigned)bs, next);
      next += (off_t)bs;
      inflight++;
    }
    io_uring_submit(&ring);
    struct io_uring_cqe* cqe;
    if (io_uring_wait_cqe(&ring, &cqe) < 0 || cqe->res < 0) {
      fprintf(stderr, "read failed\n");
      return 1;
    }
    done += cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    inflight--;
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  const double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
  printf("block %zu, %d in flight: %.0f MiB/s\n", bs, qd, (double)done / s / 1048576);
  return 0;
}
