/*
 * s3get: a small, cheap, count- and time-bounded HTTP/1.1 GET client for the
 * tagd benchmark suite.
 *
 * It replays a file of full URLs (normally SigV4 presigned S3 GET URLs made by
 * bench/tagbench/urls.py) over N keep-alive connections, one thread per
 * connection, and records per request: status, body bytes, time to first
 * byte (first byte of the response) and time to last byte.  It complements
 * wrk: wrk is time-bounded only, while epochs ("read every object exactly
 * once"), thundering herds ("32 clients at once, then stop") and slow readers
 * need a request count, per-request times and a read-rate limit.
 *
 *   s3get [-c conns] [-n requests] [-d seconds] [-s seed] [-r bytes_per_s]
 *         [-b rcvbuf] [-t timeout_s] [-l latencies.csv] URLFILE
 *
 *   -c  concurrent connections (threads), default 8
 *   -n  requests in all; default: one pass over the file (every URL once)
 *   -d  stop after this many seconds (in-flight requests are abandoned and
 *       counted as "aborted", not as errors)
 *   -s  shuffle the order with this seed (0 = file order; default 0)
 *   -r  per-connection read rate limit in bytes/s (slow readers), 0 = none
 *   -b  SO_RCVBUF in bytes (small values make a slow reader really slow)
 *   -t  per-request inactivity timeout in seconds, default 120
 *   -l  write "ttfb_us,ttlb_us,status,bytes" per request to this file
 *
 * Prints one JSON object on stdout.  Only plain http:// is supported (the
 * suite runs on loopback and on the emulated WAN namespace).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ (256 * 1024)

struct url {
    char *host;   /* host:port as sent in Host: */
    char *name;   /* host part for getaddrinfo */
    char *port;
    char *target; /* path?query */
};

struct rec {
    int64_t ttfb_us, ttlb_us, bytes;
    int status; /* 0 = transport error, -1 = aborted at deadline */
};

static struct url *urls;
static size_t nurls;
static size_t *order;
static size_t nreq;
static atomic_size_t next_idx;

struct recs {
    struct rec *v;
    size_t n, cap;
};
static struct recs *thread_recs;
static int conns = 8;
static double duration_s = 0;
static int64_t deadline_us = 0;
static long rate = 0;
static int rcvbuf = 0;
static int timeout_s = 120;
static atomic_long connects;

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *m) {
    fprintf(stderr, "s3get: %s\n", m);
    exit(2);
}

static int parse_url(char *line, struct url *u) {
    if (strncmp(line, "http://", 7) != 0) return -1;
    char *h = line + 7;
    char *slash = strchr(h, '/');
    if (!slash) return -1;
    u->host = strndup(h, (size_t)(slash - h));
    u->target = strdup(slash);
    char *colon = strrchr(u->host, ':');
    if (colon) {
        u->name = strndup(u->host, (size_t)(colon - u->host));
        u->port = strdup(colon + 1);
    } else {
        u->name = strdup(u->host);
        u->port = strdup("80");
    }
    return 0;
}

struct conn {
    int fd;
    char *buf;
    size_t pos, len;
    const char *host; /* connected to */
};

static int wait_io(int fd, short ev) {
    struct pollfd p = {.fd = fd, .events = ev};
    int64_t left_ms = (int64_t)timeout_s * 1000;
    if (deadline_us) {
        int64_t d = (deadline_us - now_us()) / 1000;
        if (d <= 0) return -2;
        if (d < left_ms) left_ms = d + 1;
    }
    for (;;) {
        int r = poll(&p, 1, (int)left_ms);
        if (r > 0) return 0;
        if (r == 0) return (deadline_us && now_us() >= deadline_us) ? -2 : -1;
        if (errno != EINTR) return -1;
    }
}

static int conn_open(struct conn *c, const struct url *u) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai;
    if (getaddrinfo(u->name, u->port, &hints, &ai) != 0) return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { freeaddrinfo(ai); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        freeaddrinfo(ai); close(fd); return -1;
    }
    freeaddrinfo(ai);
    atomic_fetch_add(&connects, 1);
    c->fd = fd;
    c->pos = c->len = 0;
    c->host = u->host;
    return 0;
}

static void conn_close(struct conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->pos = c->len = 0;
}

/* Reads more bytes into the buffer (compacting it). Returns bytes read, 0 on
 * EOF, -1 on error/timeout, -2 at the deadline. */
static ssize_t conn_fill(struct conn *c, size_t max) {
    if (c->pos > 0 && c->pos == c->len) c->pos = c->len = 0;
    if (c->len == BUFSZ) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
    }
    size_t room = BUFSZ - c->len;
    if (max && room > max) room = max;
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, room, MSG_DONTWAIT);
        if (r >= 0) { c->len += (size_t)r; return r; }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        int w = wait_io(c->fd, POLLIN);
        if (w) return w;
    }
}

/* Rate limiting for slow readers: sleep so that `got` bytes since `t0` do not
 * exceed `rate` bytes/s. */
static void pace(int64_t t0, int64_t got) {
    if (rate <= 0) return;
    int64_t due = t0 + got * 1000000 / rate;
    int64_t n = now_us();
    if (due > n) {
        if (deadline_us && due > deadline_us) due = deadline_us;
        if (due > n) usleep((useconds_t)(due - n));
    }
}

/* Consume n body bytes. Returns 0, -1 on error, -2 at deadline. */
static int discard(struct conn *c, int64_t n, int64_t *got, int64_t t0) {
    while (n > 0) {
        if (c->pos == c->len) {
            size_t max = 0;
            if (rate > 0) { max = (size_t)(rate / 20); if (max < 1024) max = 1024; }
            ssize_t r = conn_fill(c, max);
            if (r == 0) return -1;
            if (r < 0) return (int)r;
            pace(t0, *got + (int64_t)(c->len - c->pos));
        }
        size_t take = c->len - c->pos;
        if ((int64_t)take > n) take = (size_t)n;
        c->pos += take;
        n -= (int64_t)take;
        *got += (int64_t)take;
    }
    return 0;
}

/* Reads one CRLF-terminated line into out (NUL-terminated, CRLF stripped). */
static int read_line(struct conn *c, char *out, size_t outsz) {
    for (;;) {
        char *nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);
        if (nl) {
            size_t l = (size_t)(nl - (c->buf + c->pos));
            size_t cp = l < outsz - 1 ? l : outsz - 1;
            memcpy(out, c->buf + c->pos, cp);
            out[cp] = 0;
            if (cp && out[cp - 1] == '\r') out[cp - 1] = 0;
            c->pos += l + 1;
            return 0;
        }
        ssize_t r = conn_fill(c, 0);
        if (r == 0) return -1;
        if (r < 0) return (int)r;
    }
}

/* One GET. Returns 0 when the connection may be reused, 1 when it must be
 * closed, -1 on a transport error, -2 at the deadline. */
static int do_get(struct conn *c, const struct url *u, struct rec *rec) {
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tagd-bench-s3get\r\n\r\n",
                     u->target, u->host);
    if (n <= 0 || (size_t)n >= sizeof req) die("URL too long");
    int64_t t0 = now_us();
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = send(c->fd, req + off, (size_t)n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) { off += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_io(c->fd, POLLOUT);
            if (r) return r;
            continue;
        }
        return -1;
    }
    /* first byte */
    if (c->pos == c->len) {
        ssize_t r = conn_fill(c, 0);
        if (r == 0) return -1;
        if (r < 0) return (int)r;
    }
    rec->ttfb_us = now_us() - t0;
    char line[8192];
    int r = read_line(c, line, sizeof line);
    if (r) return r;
    int status = 0;
    if (sscanf(line, "HTTP/1.%*d %d", &status) != 1) return -1;
    int64_t clen = -1;
    int chunked = 0, close_after = 0;
    for (;;) {
        r = read_line(c, line, sizeof line);
        if (r) return r;
        if (!line[0]) break;
        if (!strncasecmp(line, "Content-Length:", 15)) clen = strtoll(line + 15, NULL, 10);
        else if (!strncasecmp(line, "Transfer-Encoding:", 18) && strcasestr(line + 18, "chunked")) chunked = 1;
        else if (!strncasecmp(line, "Connection:", 11) && strcasestr(line + 11, "close")) close_after = 1;
    }
    int64_t got = 0;
    int64_t tb = now_us();
    if (status == 204 || status == 304 || (status >= 100 && status < 200)) {
        /* no body */
    } else if (chunked) {
        for (;;) {
            r = read_line(c, line, sizeof line);
            if (r) { rec->bytes = got; return r; }
            int64_t sz = strtoll(line, NULL, 16);
            if (sz == 0) {
                do { r = read_line(c, line, sizeof line); if (r) return r; } while (line[0]);
                break;
            }
            r = discard(c, sz, &got, tb);
            if (r) { rec->bytes = got; return r; }
            r = read_line(c, line, sizeof line);
            if (r) return r;
        }
    } else if (clen >= 0) {
        r = discard(c, clen, &got, tb);
        if (r) { rec->bytes = got; return r; }
    } else {
        /* read to EOF */
        for (;;) {
            if (c->pos == c->len) {
                ssize_t f = conn_fill(c, 0);
                if (f == 0) break;
                if (f < 0) { rec->bytes = got; return (int)f; }
            }
            got += (int64_t)(c->len - c->pos);
            c->pos = c->len;
        }
        close_after = 1;
    }
    rec->ttlb_us = now_us() - t0;
    rec->bytes = got;
    rec->status = status;
    return close_after;
}

static void *worker(void *arg) {
    struct recs *rs = arg;
    struct conn c = {.fd = -1, .buf = malloc(BUFSZ)};
    if (!c.buf) die("out of memory");
    for (;;) {
        if (deadline_us && now_us() >= deadline_us) break;
        size_t i = atomic_fetch_add(&next_idx, 1);
        if (i >= nreq) break;
        const struct url *u = &urls[order[i % nurls]];
        if (rs->n == rs->cap) {
            rs->cap = rs->cap ? rs->cap * 2 : 1024;
            rs->v = realloc(rs->v, rs->cap * sizeof *rs->v);
            if (!rs->v) die("out of memory");
        }
        struct rec *rec = &rs->v[rs->n++];
        int attempt_fresh = 0;
        for (;;) {
            if (c.fd < 0) {
                if (conn_open(&c, u) != 0) { rec->status = 0; break; }
                attempt_fresh = 1;
            }
            memset(rec, 0, sizeof *rec);
            int r = do_get(&c, u, rec);
            if (r == -2) { rec->status = -1; conn_close(&c); break; }
            if (r < 0) {
                conn_close(&c);
                /* a keep-alive connection the server closed while idle: retry once on a new one */
                if (!attempt_fresh && rec->ttfb_us == 0) continue;
                rec->status = 0;
                break;
            }
            if (r == 1) conn_close(&c);
            break;
        }
    }
    conn_close(&c);
    free(c.buf);
    return NULL;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const int64_t *v, size_t n, double p) {
    if (!n) return 0;
    size_t k = (size_t)((p / 100.0) * (double)(n - 1) + 0.5);
    if (k >= n) k = n - 1;
    return (double)v[k] / 1000.0;
}

static void print_dist(const char *name, int64_t *v, size_t n) {
    qsort(v, n, sizeof *v, cmp64);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += (double)v[i];
    printf("\"%s\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"min\":%.3f,\"max\":%.3f,\"mean\":%.3f}",
           name, pct(v, n, 50), pct(v, n, 90), pct(v, n, 99), pct(v, n, 99.9),
           n ? (double)v[0] / 1000.0 : 0, n ? (double)v[n - 1] / 1000.0 : 0,
           n ? sum / (double)n / 1000.0 : 0);
}

int main(int argc, char **argv) {
    long long nopt = -1;
    unsigned long seed = 0;
    const char *lat_file = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "c:n:d:s:r:b:t:l:")) != -1) {
        switch (opt) {
        case 'c': conns = atoi(optarg); break;
        case 'n': nopt = atoll(optarg); break;
        case 'd': duration_s = atof(optarg); break;
        case 's': seed = strtoul(optarg, NULL, 10); break;
        case 'r': rate = atol(optarg); break;
        case 'b': rcvbuf = atoi(optarg); break;
        case 't': timeout_s = atoi(optarg); break;
        case 'l': lat_file = optarg; break;
        default: die("usage: s3get [-c conns] [-n requests] [-d seconds] [-s seed] [-r rate] [-b rcvbuf] [-t timeout] [-l file] URLFILE");
        }
    }
    if (optind >= argc) die("missing URL file");
    if (conns < 1) die("-c must be >= 1");
    FILE *f = fopen(argv[optind], "r");
    if (!f) die("cannot open URL file");
    size_t cap = 1024;
    urls = malloc(cap * sizeof *urls);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t ll;
    while ((ll = getline(&line, &lcap, f)) > 0) {
        while (ll > 0 && (line[ll - 1] == '\n' || line[ll - 1] == '\r')) line[--ll] = 0;
        if (!ll) continue;
        if (nurls == cap) { cap *= 2; urls = realloc(urls, cap * sizeof *urls); }
        if (parse_url(line, &urls[nurls]) != 0) die("bad URL (only http://host:port/path is supported)");
        nurls++;
    }
    free(line);
    fclose(f);
    if (!nurls) die("no URLs");
    nreq = nopt >= 0 ? (size_t)nopt : nurls;
    order = malloc(nurls * sizeof *order);
    for (size_t i = 0; i < nurls; i++) order[i] = i;
    if (seed) {
        srand48((long)seed);
        for (size_t i = nurls - 1; i > 0; i--) {
            size_t j = (size_t)(drand48() * (double)(i + 1));
            size_t t = order[i]; order[i] = order[j]; order[j] = t;
        }
    }
    thread_recs = calloc((size_t)conns, sizeof *thread_recs);
    if (!thread_recs || !order) die("out of memory");
    if ((size_t)conns > nreq && nreq > 0 && !duration_s) conns = (int)nreq;

    pthread_t *th = malloc((size_t)conns * sizeof *th);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int64_t t0 = now_us();
    if (duration_s > 0) deadline_us = t0 + (int64_t)(duration_s * 1e6);
    for (int i = 0; i < conns; i++)
        if (pthread_create(&th[i], &attr, worker, &thread_recs[i]) != 0) die("pthread_create failed");
    for (int i = 0; i < conns; i++) pthread_join(th[i], NULL);
    int64_t wall = now_us() - t0;

    size_t issued = 0;
    for (int t = 0; t < conns; t++) issued += thread_recs[t].n;
    size_t ok = 0, errs = 0, aborted = 0, non2xx = 0;
    int64_t bytes = 0, okbytes = 0;
    int64_t *ttfb = malloc((issued + 1) * sizeof *ttfb), *ttlb = malloc((issued + 1) * sizeof *ttlb);
    size_t nd = 0;
    int codes[6] = {0};
    FILE *lf = lat_file ? fopen(lat_file, "w") : NULL;
    for (size_t i = 0, t = 0, j = 0; i < issued; i++, j++) {
        while (j >= thread_recs[t].n) { t++; j = 0; }
        struct rec *r = &thread_recs[t].v[j];
        bytes += r->bytes;
        if (lf) fprintf(lf, "%lld,%lld,%d,%lld\n", (long long)r->ttfb_us, (long long)r->ttlb_us, r->status, (long long)r->bytes);
        if (r->status == -1) { aborted++; continue; }
        if (r->status == 0) { errs++; continue; }
        codes[r->status / 100 < 6 ? r->status / 100 : 5]++;
        if (r->status < 200 || r->status > 299) { non2xx++; continue; }
        ok++;
        okbytes += r->bytes;
        ttfb[nd] = r->ttfb_us;
        ttlb[nd] = r->ttlb_us;
        nd++;
    }
    if (lf) fclose(lf);
    double ws = (double)wall / 1e6;
    printf("{\"requests\":%zu,\"ok\":%zu,\"errors\":%zu,\"non2xx\":%zu,\"aborted\":%zu,"
           "\"status\":{\"2xx\":%d,\"3xx\":%d,\"4xx\":%d,\"5xx\":%d},\"connects\":%ld,"
           "\"bytes\":%lld,\"ok_bytes\":%lld,\"wall_s\":%.6f,\"ops_s\":%.3f,\"mib_s\":%.3f,",
           issued, ok, errs, non2xx, aborted, codes[2], codes[3], codes[4], codes[5],
           atomic_load(&connects), (long long)bytes, (long long)okbytes, ws,
           ws > 0 ? (double)ok / ws : 0, ws > 0 ? (double)bytes / 1048576.0 / ws : 0);
    print_dist("ttfb_ms", ttfb, nd);
    printf(",");
    print_dist("ttlb_ms", ttlb, nd);
    printf("}\n");
    return 0;
}
