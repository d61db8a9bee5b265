/* The emulator's compiled fast path: a cache of the flows the Python core already decided.
 *
 * harness/emulator/core.py and harness/flows.py own every decision (flow creation, cookies,
 * stickiness, TCP reuse, expiry, rebalancing, drop reasons, mismatch and mix-up records). This
 * module only replays, for packets of flows Python created, the outcome Python would reach:
 *   forward: inner packet from an endpoint -> the flow's target, GENEVE header and source port;
 *   return:  GENEVE packet from a target carrying the exact header sent -> the flow's endpoint.
 * A flow holds one header per direction: under a profile whose cookie word carries the direction
 * (tencent) they differ, and a flow is found by the cookie word's bits below the direction.
 * Anything else (a new flow, TCP SYN/FIN/RST, ICMP errors, fragments, IPv6 extension headers,
 * oversize or empty packets, an expired flow, any header that is not byte-for-byte the one sent,
 * the wrong target or source port in strict mode, a possible cookie mix-up) is a miss, and the
 * caller hands the packet to Python unchanged. Hits only count (per flow, per zone, per target);
 * Python folds the counts into its own state whenever it takes the cache's lock (`drain`).
 *
 * Python installs an entry when its slow path has used a flow (`put`), moves it (`set_target`) and
 * removes it when the flow retires (`remove`). All of that, and every lookup, happens under one
 * mutex, which is also the Gwlb's lock (`acquire`/`release`), so a hit never sees a half-made
 * Python decision. `serve` is the event loop: tun fds and the raw return socket under epoll,
 * batched reads, sendmmsg(2)/recvmmsg(2), the GIL released except while a miss runs in Python.
 * Endpoints created while it runs join through `add_endpoint` (its zone) and `watch` (its tun fd,
 * added to the running loop's epoll set).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GENEVE_PORT 6081
#define MAX_INNER 8500
#define AWS_HEADER 40
#define COOKIE_OFFSET 36
#define OUTER 28
#define BUF_SIZE 65536
#define HEADROOM 128
#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_ICMPV6 58
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define NONE (-1)
#define MAX_BATCH 1024
#define EVENT_RX UINT64_MAX
#define EVENT_STOP (UINT64_MAX - 1)

typedef struct {
    uint16_t endpoint;
    uint8_t version;
    uint8_t protocol;
    uint16_t low_port;
    uint16_t high_port;
    uint8_t low[16];
    uint8_t high[16];
} Key;

typedef struct {
    Key key;
    PyObject *flow;
    double last_seen;
    double limit;
    uint64_t packets[2];
    uint64_t octets[2];
    uint64_t returned[2];
    uint32_t cookie;
    int32_t next_key;
    int32_t next_cookie;
    uint16_t target;
    uint16_t source_port;
    uint8_t dirty;
    uint8_t used;
    uint8_t header[2][AWS_HEADER];
    uint8_t initiator[16];
} Entry;

typedef struct {
    int64_t second;
    uint64_t packets;
    uint64_t bytes;
} Bucket;

typedef struct {
    Bucket *items;
    size_t count;
    size_t capacity;
} Buckets;

typedef struct {
    uint64_t forwarded, delivered, forward_misses, return_misses, batches, send_errors, write_errors;
} Stats;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mutex;
    pthread_t owner;
    int held;
    PyObject *clock;
    int stickiness;
    int strict;
    uint32_t cookie_mask;
    int nendpoints;
    int endpoint_capacity;
    uint16_t *endpoint_zone;
    int *tun_fds;
    int epoll_fd;
    int nzones;
    int ntargets;
    uint8_t (*targets)[4];
    Entry *entries;
    int32_t capacity;
    int32_t count;
    int32_t free_head;
    int32_t *key_heads;
    int32_t *cookie_heads;
    uint32_t nbuckets;
    int32_t *dirty;
    size_t ndirty;
    size_t dirty_capacity;
    Buckets *zones;
    uint64_t *target_packets;
    uint64_t source_port_changed;
    int activity;
    int stop_fd;
    volatile int stopping;
    int serving;
    Stats stats;
} Cache;

typedef struct {
    uint8_t version;
    uint8_t protocol;
    uint8_t alen;
    uint8_t flags;
    const uint8_t *src;
    const uint8_t *dst;
    uint16_t sport;
    uint16_t dport;
} Inner;

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static inline uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xFF; }

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Python's clock when one was injected (tests), else CLOCK_MONOTONIC (time.monotonic's). */
static int now_of(Cache *c, double *now) {
    if (c->clock == NULL) {
        *now = monotonic();
        return 0;
    }
    PyObject *value = PyObject_CallNoArgs(c->clock);
    if (value == NULL) return -1;
    *now = PyFloat_AsDouble(value);
    Py_DECREF(value);
    return (*now == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* harness.inet.parse_inner for the packets a hit may carry; 0 (a miss) for everything else:
 * not IP, truncated headers, fragments, IPv6 extension headers and ICMP/ICMPv6 errors. */
static int parse_inner(const uint8_t *p, size_t n, Inner *f) {
    size_t offset;
    if (n == 0) return 0;
    f->version = p[0] >> 4;
    if (f->version == 4) {
        if (n < 20) return 0;
        offset = (size_t)(p[0] & 0x0F) * 4;
        if (offset < 20 || offset > n || (be16(p + 6) & 0x3FFF)) return 0;
        f->protocol = p[9];
        f->src = p + 12;
        f->dst = p + 16;
        f->alen = 4;
        if (f->protocol == PROTO_ICMP && n > offset && (p[offset] == 3 || p[offset] == 11 || p[offset] == 12)) return 0;
    } else if (f->version == 6) {
        if (n < 40) return 0;
        offset = 40;
        f->protocol = p[6];
        if (f->protocol == 0 || f->protocol == 43 || f->protocol == 44 || f->protocol == 60) return 0;
        f->src = p + 8;
        f->dst = p + 24;
        f->alen = 16;
        if (f->protocol == PROTO_ICMPV6 && n > offset && p[offset] >= 1 && p[offset] <= 4) return 0;
    } else {
        return 0;
    }
    f->sport = f->dport = 0;
    f->flags = 0;
    if (f->protocol == PROTO_TCP || f->protocol == PROTO_UDP) {
        if (n < offset + (f->protocol == PROTO_TCP ? 14 : 4)) return 0;
        f->sport = be16(p + offset);
        f->dport = be16(p + offset + 2);
        if (f->protocol == PROTO_TCP) f->flags = p[offset + 13];
    }
    return 1;
}

/* harness.flows.FlowKey.of: direction-free, ports only for TCP/UDP under 5-tuple stickiness,
 * no protocol under 2-tuple; the two ends sorted by (address, port). */
static void make_key(const Cache *c, int endpoint, const Inner *f, Key *k) {
    int ported = (f->protocol == PROTO_TCP || f->protocol == PROTO_UDP) && c->stickiness == 5;
    uint16_t sport = ported ? f->sport : 0, dport = ported ? f->dport : 0;
    int order = memcmp(f->src, f->dst, f->alen);
    if (order == 0) order = (sport > dport) - (sport < dport);
    memset(k, 0, sizeof *k);
    k->endpoint = (uint16_t)endpoint;
    k->version = f->version;
    k->protocol = c->stickiness == 2 ? 0 : f->protocol;
    memcpy(k->low, order <= 0 ? f->src : f->dst, f->alen);
    memcpy(k->high, order <= 0 ? f->dst : f->src, f->alen);
    k->low_port = order <= 0 ? sport : dport;
    k->high_port = order <= 0 ? dport : sport;
}

static uint32_t key_hash(const Key *k) {
    uint64_t words[5], h = 0x9E3779B97F4A7C15ULL;
    memcpy(words, k, sizeof words);
    for (int i = 0; i < 5; i++) {
        h ^= words[i];
        h *= 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static inline uint32_t cookie_hash(uint32_t cookie) { return cookie * 0x9E3779B1U; }

static int32_t find_key(const Cache *c, const Key *k) {
    int32_t i = c->key_heads[key_hash(k) & (c->nbuckets - 1)];
    while (i != NONE && memcmp(&c->entries[i].key, k, sizeof *k) != 0) i = c->entries[i].next_key;
    return i;
}

static int32_t find_cookie(const Cache *c, uint32_t cookie) {
    int32_t i = c->cookie_heads[cookie_hash(cookie) & (c->nbuckets - 1)];
    while (i != NONE && c->entries[i].cookie != cookie) i = c->entries[i].next_cookie;
    return i;
}

static void link_entry(Cache *c, int32_t i) {
    Entry *e = &c->entries[i];
    uint32_t kb = key_hash(&e->key) & (c->nbuckets - 1), cb = cookie_hash(e->cookie) & (c->nbuckets - 1);
    e->next_key = c->key_heads[kb];
    c->key_heads[kb] = i;
    e->next_cookie = c->cookie_heads[cb];
    c->cookie_heads[cb] = i;
}

static void unlink_entry(Cache *c, int32_t i) {
    Entry *e = &c->entries[i];
    int32_t *at = &c->key_heads[key_hash(&e->key) & (c->nbuckets - 1)];
    while (*at != i) at = &c->entries[*at].next_key;
    *at = e->next_key;
    at = &c->cookie_heads[cookie_hash(e->cookie) & (c->nbuckets - 1)];
    while (*at != i) at = &c->entries[*at].next_cookie;
    *at = e->next_cookie;
}

static int rehash(Cache *c, uint32_t nbuckets) {
    int32_t *keys = PyMem_RawMalloc(sizeof(int32_t) * nbuckets), *cookies = PyMem_RawMalloc(sizeof(int32_t) * nbuckets);
    if (keys == NULL || cookies == NULL) {
        PyMem_RawFree(keys);
        PyMem_RawFree(cookies);
        return -1;
    }
    PyMem_RawFree(c->key_heads);
    PyMem_RawFree(c->cookie_heads);
    c->key_heads = keys;
    c->cookie_heads = cookies;
    c->nbuckets = nbuckets;
    for (uint32_t b = 0; b < nbuckets; b++) keys[b] = cookies[b] = NONE;
    for (int32_t i = 0; i < c->capacity; i++)
        if (c->entries[i].used) link_entry(c, i);
    return 0;
}

static int32_t new_entry(Cache *c) {
    if (c->free_head == NONE) {
        int32_t grown = c->capacity ? c->capacity * 2 : 256;
        Entry *entries = PyMem_RawRealloc(c->entries, sizeof(Entry) * (size_t)grown);
        if (entries == NULL) return NONE;
        c->entries = entries;
        for (int32_t i = grown - 1; i >= c->capacity; i--) {
            entries[i].used = 0;
            entries[i].next_key = c->free_head;
            c->free_head = i;
        }
        c->capacity = grown;
    }
    if ((uint32_t)(c->count + 1) > c->nbuckets / 2 * 3 / 2 && rehash(c, c->nbuckets * 2) < 0) return NONE;
    int32_t i = c->free_head;
    c->free_head = c->entries[i].next_key;
    memset(&c->entries[i], 0, sizeof(Entry));
    c->entries[i].used = 1;
    c->count++;
    return i;
}

static int mark_dirty(Cache *c, int32_t i) {
    c->activity = 1;
    if (c->entries[i].dirty) return 0;
    if (c->ndirty == c->dirty_capacity) {
        size_t grown = c->dirty_capacity ? c->dirty_capacity * 2 : 256;
        int32_t *dirty = PyMem_RawRealloc(c->dirty, sizeof(int32_t) * grown);
        if (dirty == NULL) return -1;
        c->dirty = dirty;
        c->dirty_capacity = grown;
    }
    c->dirty[c->ndirty++] = i;
    c->entries[i].dirty = 1;
    return 0;
}

/* harness.emulator.metrics.Traffic: one bucket per second, so Python derives the same peaks. */
static int bucket_add(Buckets *z, int64_t second, size_t size) {
    if (z->count && z->items[z->count - 1].second == second) {
        z->items[z->count - 1].packets++;
        z->items[z->count - 1].bytes += size;
        return 0;
    }
    if (z->count == z->capacity) {
        size_t grown = z->capacity ? z->capacity * 2 : 4;
        Bucket *items = PyMem_RawRealloc(z->items, sizeof(Bucket) * grown);
        if (items == NULL) return -1;
        z->items = items;
        z->capacity = grown;
    }
    z->items[z->count++] = (Bucket){second, 1, size};
    return 0;
}

static int count_traffic(Cache *c, int32_t i, size_t size, double now) {
    int zone = c->endpoint_zone[c->entries[i].key.endpoint];
    int64_t second = (int64_t)now;
    if (mark_dirty(c, i) < 0 || bucket_add(&c->zones[zone], second, size) < 0 ||
        bucket_add(&c->zones[c->nzones], second, size) < 0)
        return -1;
    c->entries[i].last_seen = now;
    return 0;
}

static inline int expired(const Entry *e, double now) { return now - e->last_seen > e->limit; }

/* Gwlb.from_endpoint for an existing flow and a packet that changes no TCP state. */
static int32_t forward_lookup(const Cache *c, int endpoint, const uint8_t *p, size_t n, double now, int *direction) {
    Inner f;
    Key k;
    if (n > MAX_INNER || !parse_inner(p, n, &f)) return NONE;
    if (f.protocol == PROTO_TCP && (f.flags & (TCP_SYN | TCP_FIN | TCP_RST))) return NONE;
    make_key(c, endpoint, &f, &k);
    int32_t i = find_key(c, &k);
    if (i == NONE || expired(&c->entries[i], now)) return NONE;
    *direction = memcmp(f.src, c->entries[i].initiator, f.alen) != 0;
    return i;
}

static int forward_count(Cache *c, int32_t i, int direction, size_t size, double now) {
    Entry *e = &c->entries[i];
    e->packets[direction]++;
    e->octets[direction] += size;
    c->target_packets[e->target]++;
    return count_traffic(c, i, size, now);
}

static int target_of(const Cache *c, const uint8_t *source) {
    int found = NONE;
    for (int t = 0; t < c->ntargets; t++)
        if (memcmp(c->targets[t], source, 4) == 0) found = t;
    return found;
}

/* Gwlb.from_target for a return that passes every check with the exact header sent and whose
 * inner packet is the flow's own or no other flow's (so there is no mix-up to record). */
static int32_t return_lookup(const Cache *c, const uint8_t *source, int sport, int dport, const uint8_t *p, size_t n,
                             double now, int *direction) {
    Inner f;
    Key k;
    if (dport != GENEVE_PORT || n <= AWS_HEADER || n - AWS_HEADER > MAX_INNER) return NONE;
    int target = target_of(c, source);
    int32_t i = target == NONE ? NONE : find_cookie(c, be32(p + COOKIE_OFFSET) & c->cookie_mask);
    if (i == NONE) return NONE;
    const Entry *e = &c->entries[i];
    if (!parse_inner(p + AWS_HEADER, n - AWS_HEADER, &f)) return NONE;
    *direction = memcmp(f.src, e->initiator, f.alen) != 0;
    if (memcmp(p, e->header[*direction], AWS_HEADER) != 0 || expired(e, now) || target != e->target ||
        (c->strict && sport != e->source_port))
        return NONE;
    make_key(c, e->key.endpoint, &f, &k);
    if (memcmp(&k, &e->key, sizeof k) != 0 && find_key(c, &k) != NONE) return NONE;
    return i;
}

static int return_count(Cache *c, int32_t i, int direction, int sport, size_t size, double now) {
    Entry *e = &c->entries[i];
    if (sport != e->source_port) c->source_port_changed++;
    e->returned[direction]++;
    return count_traffic(c, i, size, now);
}

/* ---- the Python object ---------------------------------------------------------------- */

static int check_held(Cache *c) {
    if (!c->held || !pthread_equal(c->owner, pthread_self())) {
        PyErr_SetString(PyExc_RuntimeError, "the fast-path cache is used without holding its lock (the Gwlb's lock)");
        return -1;
    }
    return 0;
}

static void lock_raw(Cache *c) {
    pthread_mutex_lock(&c->mutex);
    c->owner = pthread_self();
    c->held = 1;
}

static void unlock_raw(Cache *c) {
    c->held = 0;
    pthread_mutex_unlock(&c->mutex);
}

static void clear_entries(Cache *c) {
    for (int32_t i = 0; i < c->capacity; i++)
        if (c->entries[i].used) Py_CLEAR(c->entries[i].flow);
}

static void Cache_dealloc(Cache *c) {
    clear_entries(c);
    PyMem_RawFree(c->entries);
    PyMem_RawFree(c->key_heads);
    PyMem_RawFree(c->cookie_heads);
    PyMem_RawFree(c->dirty);
    if (c->zones != NULL)
        for (int z = 0; z <= c->nzones; z++) PyMem_RawFree(c->zones[z].items);
    PyMem_RawFree(c->zones);
    PyMem_RawFree(c->target_packets);
    PyMem_RawFree(c->endpoint_zone);
    PyMem_RawFree(c->tun_fds);
    PyMem_RawFree(c->targets);
    Py_XDECREF(c->clock);
    if (c->stop_fd >= 0) close(c->stop_fd);
    pthread_mutex_destroy(&c->mutex);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *Cache_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"endpoint_zones", "targets", "stickiness", "strict", "clock", "cookie_bits", NULL};
    PyObject *zones, *targets, *clock = Py_None;
    int stickiness, strict, cookie_bits = 32;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOip|Oi", names, &zones, &targets, &stickiness, &strict, &clock,
                                     &cookie_bits))
        return NULL;
    if (stickiness != 5 && stickiness != 3 && stickiness != 2) {
        PyErr_Format(PyExc_ValueError, "stickiness: expected 5, 3 or 2 (tuple size), found %d", stickiness);
        return NULL;
    }
    if (cookie_bits < 1 || cookie_bits > 32) {
        PyErr_Format(PyExc_ValueError, "cookie_bits: expected 1..32 (the cookie word's bits below its direction), found %d",
                     cookie_bits);
        return NULL;
    }
    Cache *c = (Cache *)type->tp_alloc(type, 0);
    if (c == NULL) return NULL;
    c->stop_fd = -1;
    c->epoll_fd = -1;
    pthread_mutex_init(&c->mutex, NULL);
    c->stickiness = stickiness;
    c->strict = strict;
    c->cookie_mask = cookie_bits == 32 ? UINT32_MAX : ((uint32_t)1 << cookie_bits) - 1;
    c->free_head = NONE;
    if (clock != Py_None) {
        Py_INCREF(clock);
        c->clock = clock;
    }
    PyObject *zone_list = PySequence_Fast(zones, "endpoint_zones: expected a sequence of zone indexes");
    PyObject *target_list = zone_list ? PySequence_Fast(targets, "targets: expected a sequence of 4-byte addresses") : NULL;
    if (target_list == NULL) goto fail;
    c->nendpoints = (int)PySequence_Fast_GET_SIZE(zone_list);
    c->ntargets = (int)PySequence_Fast_GET_SIZE(target_list);
    c->endpoint_capacity = c->nendpoints + 1;
    c->endpoint_zone = PyMem_RawCalloc((size_t)c->endpoint_capacity, sizeof(uint16_t));
    c->tun_fds = PyMem_RawCalloc((size_t)c->endpoint_capacity, sizeof(int));
    c->targets = PyMem_RawCalloc((size_t)c->ntargets + 1, 4);
    c->target_packets = PyMem_RawCalloc((size_t)c->ntargets + 1, sizeof(uint64_t));
    if (c->endpoint_zone == NULL || c->tun_fds == NULL || c->targets == NULL || c->target_packets == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (int e = 0; e < c->endpoint_capacity; e++) c->tun_fds[e] = -1;
    for (int e = 0; e < c->nendpoints; e++) {
        long zone = PyLong_AsLong(PySequence_Fast_GET_ITEM(zone_list, e));
        if (zone == -1 && PyErr_Occurred()) goto fail;
        if (zone < 0 || zone > 0xFFFF) {
            PyErr_Format(PyExc_ValueError, "endpoint_zones[%d]: expected 0..65535, found %ld", e, zone);
            goto fail;
        }
        c->endpoint_zone[e] = (uint16_t)zone;
        if (zone + 1 > c->nzones) c->nzones = (int)zone + 1;
    }
    for (int t = 0; t < c->ntargets; t++) {
        PyObject *address = PySequence_Fast_GET_ITEM(target_list, t);
        if (!PyBytes_Check(address) || PyBytes_GET_SIZE(address) != 4) {
            PyErr_Format(PyExc_ValueError, "targets[%d]: expected 4 bytes (a packed IPv4 address)", t);
            goto fail;
        }
        memcpy(c->targets[t], PyBytes_AS_STRING(address), 4);
    }
    c->zones = PyMem_RawCalloc((size_t)c->nzones + 1, sizeof(Buckets));
    c->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->zones == NULL || rehash(c, 1024) < 0) {
        PyErr_NoMemory();
        goto fail;
    }
    if (c->stop_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    Py_DECREF(zone_list);
    Py_DECREF(target_list);
    return (PyObject *)c;
fail:
    Py_XDECREF(zone_list);
    Py_XDECREF(target_list);
    Py_DECREF(c);
    return NULL;
}

static PyObject *Cache_acquire(Cache *c, PyObject *unused) {
    if (c->held && pthread_equal(c->owner, pthread_self())) {
        PyErr_SetString(PyExc_RuntimeError, "the fast-path cache's lock is not reentrant");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    lock_raw(c);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *Cache_release(Cache *c, PyObject *unused) {
    if (check_held(c) < 0) return NULL;
    unlock_raw(c);
    Py_RETURN_NONE;
}

static int fill_address(uint8_t *out, const char *field, const char *data, Py_ssize_t size, int version) {
    if (size != (version == 4 ? 4 : 16)) {
        PyErr_Format(PyExc_ValueError, "%s: expected %d bytes, found %zd", field, version == 4 ? 4 : 16, size);
        return -1;
    }
    memcpy(out, data, (size_t)size);
    return 0;
}

static PyObject *Cache_put(Cache *c, PyObject *args) {
    PyObject *flow;
    unsigned int cookie;
    int endpoint, protocol, low_port, high_port, target, source_port;
    const char *low, *high, *initiator, *header, *reply_header;
    Py_ssize_t low_size, high_size, initiator_size, header_size, reply_header_size;
    double limit, last_seen;
    if (!PyArg_ParseTuple(args, "OIiiy#iy#iy#iiy#y#dd:put", &flow, &cookie, &endpoint, &protocol, &low, &low_size,
                          &low_port, &high, &high_size, &high_port, &initiator, &initiator_size, &target, &source_port,
                          &header, &header_size, &reply_header, &reply_header_size, &limit, &last_seen))
        return NULL;
    if (check_held(c) < 0) return NULL;
    if (endpoint < 0 || endpoint >= c->nendpoints || target < 0 || target >= c->ntargets) {
        PyErr_Format(PyExc_ValueError, "put: endpoint %d or target %d out of range", endpoint, target);
        return NULL;
    }
    if (header_size != AWS_HEADER || reply_header_size != AWS_HEADER || (cookie & ~c->cookie_mask) != 0 ||
        (be32((const uint8_t *)header + COOKIE_OFFSET) & c->cookie_mask) != cookie ||
        (be32((const uint8_t *)reply_header + COOKIE_OFFSET) & c->cookie_mask) != cookie) {
        PyErr_Format(PyExc_ValueError, "put: expected two %d-byte headers (one per direction) carrying cookie 0x%x",
                     AWS_HEADER, cookie);
        return NULL;
    }
    Key k;
    memset(&k, 0, sizeof k);
    k.endpoint = (uint16_t)endpoint;
    k.version = low_size == 4 ? 4 : 6;
    k.protocol = (uint8_t)protocol;
    k.low_port = (uint16_t)low_port;
    k.high_port = (uint16_t)high_port;
    uint8_t initiator_address[16] = {0};
    if (fill_address(k.low, "low address", low, low_size, k.version) < 0 ||
        fill_address(k.high, "high address", high, high_size, k.version) < 0 ||
        fill_address(initiator_address, "initiator", initiator, initiator_size, k.version) < 0)
        return NULL;
    int32_t i = find_cookie(c, cookie);
    if (i == NONE) {
        if (find_key(c, &k) != NONE) {
            PyErr_Format(PyExc_RuntimeError, "put: another cookie already holds the key of cookie 0x%x", cookie);
            return NULL;
        }
        i = new_entry(c);
        if (i == NONE) return PyErr_NoMemory();
        Entry *e = &c->entries[i];
        e->key = k;
        e->cookie = cookie;
        e->source_port = (uint16_t)source_port;
        memcpy(e->header[0], header, AWS_HEADER);
        memcpy(e->header[1], reply_header, AWS_HEADER);
        memcpy(e->initiator, initiator_address, sizeof initiator_address);
        Py_INCREF(flow);
        e->flow = flow;
        e->last_seen = last_seen;
        link_entry(c, i);
    } else if (memcmp(&c->entries[i].key, &k, sizeof k) != 0) {
        PyErr_Format(PyExc_RuntimeError, "put: cookie 0x%x is cached for another flow key", cookie);
        return NULL;
    }
    Entry *e = &c->entries[i];
    e->target = (uint16_t)target;
    e->limit = limit;
    if (last_seen > e->last_seen) e->last_seen = last_seen;
    Py_RETURN_NONE;
}

static PyObject *Cache_remove(Cache *c, PyObject *arg) {
    unsigned long cookie = PyLong_AsUnsignedLong(arg);
    if (cookie == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    if (check_held(c) < 0) return NULL;
    int32_t i = find_cookie(c, (uint32_t)cookie);
    if (i == NONE) Py_RETURN_FALSE;
    unlink_entry(c, i);
    Entry *e = &c->entries[i];
    Py_CLEAR(e->flow);
    e->used = 0;
    e->dirty = 0;
    e->next_key = c->free_head;
    c->free_head = i;
    c->count--;
    Py_RETURN_TRUE;
}

static PyObject *Cache_set_target(Cache *c, PyObject *args) {
    unsigned int cookie;
    int target;
    if (!PyArg_ParseTuple(args, "Ii:set_target", &cookie, &target)) return NULL;
    if (check_held(c) < 0) return NULL;
    if (target < 0 || target >= c->ntargets) {
        PyErr_Format(PyExc_ValueError, "set_target: target %d out of range", target);
        return NULL;
    }
    int32_t i = find_cookie(c, cookie);
    if (i == NONE) Py_RETURN_FALSE;
    c->entries[i].target = (uint16_t)target;
    Py_RETURN_TRUE;
}

/* An endpoint created while the load balancer runs: zone index `zone` (an existing one, or the next
 * new one); returns its endpoint index. */
static PyObject *Cache_add_endpoint(Cache *c, PyObject *args) {
    int zone;
    if (!PyArg_ParseTuple(args, "i:add_endpoint", &zone)) return NULL;
    if (check_held(c) < 0) return NULL;
    if (zone < 0 || zone > c->nzones || c->nendpoints >= 0xFFFF) {
        PyErr_Format(PyExc_ValueError, "add_endpoint: zone %d is neither a known zone (0..%d) nor the next one (%d), "
                     "or there are 65535 endpoints already", zone, c->nzones - 1, c->nzones);
        return NULL;
    }
    if (c->nendpoints == c->endpoint_capacity) {
        int grown = c->endpoint_capacity * 2;
        uint16_t *zones = PyMem_RawRealloc(c->endpoint_zone, sizeof(uint16_t) * (size_t)grown);
        if (zones == NULL) return PyErr_NoMemory();
        c->endpoint_zone = zones;
        int *fds = PyMem_RawRealloc(c->tun_fds, sizeof(int) * (size_t)grown);
        if (fds == NULL) return PyErr_NoMemory();
        c->tun_fds = fds;
        for (int e = c->endpoint_capacity; e < grown; e++) c->tun_fds[e] = -1;
        c->endpoint_capacity = grown;
    }
    if (zone == c->nzones) {
        Buckets *buckets = PyMem_RawRealloc(c->zones, sizeof(Buckets) * (size_t)(c->nzones + 2));
        if (buckets == NULL) return PyErr_NoMemory();
        c->zones = buckets;
        buckets[c->nzones + 1] = buckets[c->nzones];
        memset(&buckets[c->nzones], 0, sizeof(Buckets));
        c->nzones++;
    }
    c->endpoint_zone[c->nendpoints] = (uint16_t)zone;
    return PyLong_FromLong(c->nendpoints++);
}

static int watch_fd(Cache *c, int endpoint) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)endpoint << 32 | (uint32_t)c->tun_fds[endpoint]};
    return epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, c->tun_fds[endpoint], &ev);
}

static PyObject *Cache_watch(Cache *c, PyObject *args) {
    int endpoint, fd;
    if (!PyArg_ParseTuple(args, "ii:watch", &endpoint, &fd)) return NULL;
    if (check_held(c) < 0) return NULL;
    if (endpoint < 0 || endpoint >= c->nendpoints || fd < 0 || c->tun_fds[endpoint] >= 0) {
        PyErr_Format(PyExc_ValueError, "watch: endpoint %d is unknown or has a tun fd already, or fd %d is invalid",
                     endpoint, fd);
        return NULL;
    }
    c->tun_fds[endpoint] = fd;
    if (c->epoll_fd >= 0 && watch_fd(c, endpoint) < 0) {
        c->tun_fds[endpoint] = -1;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *Cache_forward(Cache *c, PyObject *args) {
    int endpoint, direction;
    Py_buffer inner;
    double now;
    if (!PyArg_ParseTuple(args, "iy*:forward", &endpoint, &inner)) return NULL;
    PyObject *result = NULL;
    if (check_held(c) < 0 || now_of(c, &now) < 0) goto done;
    int32_t i = endpoint < 0 || endpoint >= c->nendpoints
                    ? NONE
                    : forward_lookup(c, endpoint, inner.buf, (size_t)inner.len, now, &direction);
    if (i == NONE) {
        c->stats.forward_misses++;
        result = Py_NewRef(Py_None);
        goto done;
    }
    c->stats.forwarded++;
    if (forward_count(c, i, direction, (size_t)inner.len, now) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    Entry *e = &c->entries[i];
    PyObject *payload = PyBytes_FromStringAndSize(NULL, AWS_HEADER + inner.len);
    if (payload == NULL) goto done;
    memcpy(PyBytes_AS_STRING(payload), e->header[direction], AWS_HEADER);
    memcpy(PyBytes_AS_STRING(payload) + AWS_HEADER, inner.buf, (size_t)inner.len);
    result = Py_BuildValue("iiN", e->target, e->source_port, payload);
done:
    PyBuffer_Release(&inner);
    return result;
}

static PyObject *Cache_back(Cache *c, PyObject *args) {
    Py_buffer source, payload;
    int sport, dport, direction;
    double now;
    if (!PyArg_ParseTuple(args, "y*iiy*:back", &source, &sport, &dport, &payload)) return NULL;
    PyObject *result = NULL;
    if (check_held(c) < 0 || now_of(c, &now) < 0) goto done;
    int32_t i = source.len != 4 ? NONE
                                : return_lookup(c, source.buf, sport, dport, payload.buf, (size_t)payload.len, now, &direction);
    if (i == NONE) {
        c->stats.return_misses++;
        result = Py_NewRef(Py_None);
        goto done;
    }
    c->stats.delivered++;
    size_t size = (size_t)payload.len - AWS_HEADER;
    if (return_count(c, i, direction, sport, size, now) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_BuildValue("iy#", c->entries[i].key.endpoint, (const char *)payload.buf + AWS_HEADER, (Py_ssize_t)size);
done:
    PyBuffer_Release(&source);
    PyBuffer_Release(&payload);
    return result;
}

/* What the hits changed since the last drain, for Python to fold into its flows and metrics:
 * ([(flow, packets0, packets1, octets0, octets1, returned0, returned1, last_seen)], [packets per target],
 *  [[(second, packets, bytes)] per zone, then the load balancer's], source_port_changed),
 * or None when nothing changed. */
static PyObject *Cache_drain(Cache *c, PyObject *unused) {
    if (check_held(c) < 0) return NULL;
    if (!c->activity) Py_RETURN_NONE;
    PyObject *flows = PyList_New(0), *targets = PyList_New(c->ntargets), *zones = PyList_New(c->nzones + 1);
    if (flows == NULL || targets == NULL || zones == NULL) goto fail;
    for (size_t d = 0; d < c->ndirty; d++) {
        Entry *e = &c->entries[c->dirty[d]];
        if (!e->used || !e->dirty) continue;
        PyObject *row = Py_BuildValue("(OKKKKKKd)", e->flow, (unsigned long long)e->packets[0],
                                      (unsigned long long)e->packets[1], (unsigned long long)e->octets[0],
                                      (unsigned long long)e->octets[1], (unsigned long long)e->returned[0],
                                      (unsigned long long)e->returned[1], e->last_seen);
        if (row == NULL || PyList_Append(flows, row) < 0) {
            Py_XDECREF(row);
            goto fail;
        }
        Py_DECREF(row);
        e->dirty = 0;
        e->packets[0] = e->packets[1] = e->octets[0] = e->octets[1] = e->returned[0] = e->returned[1] = 0;
    }
    for (int t = 0; t < c->ntargets; t++) {
        PyObject *value = PyLong_FromUnsignedLongLong(c->target_packets[t]);
        if (value == NULL) goto fail;
        PyList_SET_ITEM(targets, t, value);
    }
    for (int z = 0; z <= c->nzones; z++) {
        Buckets *b = &c->zones[z];
        PyObject *list = PyList_New((Py_ssize_t)b->count);
        if (list == NULL) goto fail;
        PyList_SET_ITEM(zones, z, list);
        for (size_t k = 0; k < b->count; k++) {
            PyObject *item = Py_BuildValue("(LKK)", (long long)b->items[k].second, (unsigned long long)b->items[k].packets,
                                           (unsigned long long)b->items[k].bytes);
            if (item == NULL) goto fail;
            PyList_SET_ITEM(list, (Py_ssize_t)k, item);
        }
    }
    PyObject *result = Py_BuildValue("(NNNK)", flows, targets, zones, (unsigned long long)c->source_port_changed);
    if (result == NULL) return NULL;
    c->ndirty = 0;
    memset(c->target_packets, 0, sizeof(uint64_t) * (size_t)c->ntargets);
    for (int z = 0; z <= c->nzones; z++) c->zones[z].count = 0;
    c->source_port_changed = 0;
    c->activity = 0;
    return result;
fail:
    Py_XDECREF(flows);
    Py_XDECREF(targets);
    Py_XDECREF(zones);
    return NULL;
}

static PyObject *Cache_cookies(Cache *c, PyObject *unused) {
    if (check_held(c) < 0) return NULL;
    PyObject *set = PySet_New(NULL);
    for (int32_t i = 0; set != NULL && i < c->capacity; i++) {
        if (!c->entries[i].used) continue;
        PyObject *cookie = PyLong_FromUnsignedLong(c->entries[i].cookie);
        if (cookie == NULL || PySet_Add(set, cookie) < 0) Py_CLEAR(set);
        Py_XDECREF(cookie);
    }
    return set;
}

static PyObject *Cache_stats(Cache *c, PyObject *unused) {
    const Stats *s = &c->stats;
    return Py_BuildValue("{sKsKsKsKsKsKsKsi}", "forwarded", (unsigned long long)s->forwarded, "delivered",
                         (unsigned long long)s->delivered, "forward_misses", (unsigned long long)s->forward_misses,
                         "return_misses", (unsigned long long)s->return_misses, "batches", (unsigned long long)s->batches,
                         "send_errors", (unsigned long long)s->send_errors, "write_errors",
                         (unsigned long long)s->write_errors, "flows", c->count);
}

static Py_ssize_t Cache_len(Cache *c) { return c->count; }

static PyObject *Cache_stop(Cache *c, PyObject *unused) {
    uint64_t one = 1;
    c->stopping = 1;
    if (write(c->stop_fd, &one, sizeof one) < 0 && errno != EAGAIN) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* ---- the event loop ------------------------------------------------------------------- */

typedef struct {
    int fd;
    const uint8_t *data;
    size_t size;
} Pending;

typedef struct {
    Cache *c;
    PyThreadState *saved;
    int ntuns;
    int *tuns;
    int rx;
    int tx;
    uint8_t address[4];
    PyObject *on_forward;
    PyObject *on_return;
    int batch;
    uint8_t *in_buffers;
    size_t *in_sizes;
    uint8_t *rx_buffers;
    struct mmsghdr *rx_msgs;
    struct iovec *rx_iov;
    struct mmsghdr *tx_msgs;
    struct iovec *tx_iov;
    struct sockaddr_in *target_addresses;
    Pending *pending;
    int npending;
    int ntx;
    int error;
} Loop;

static void flush_tx(Loop *l) {
    int sent = 0;
    while (sent < l->ntx) {
        int r = sendmmsg(l->tx, l->tx_msgs + sent, (unsigned int)(l->ntx - sent), 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) l->c->stats.send_errors++;
        sent += r < 0 ? 1 : r;
    }
    l->ntx = 0;
}

static void flush_pending(Loop *l) {
    for (int k = 0; k < l->npending; k++) {
        ssize_t r;
        do {
            r = write(l->pending[k].fd, l->pending[k].data, l->pending[k].size);
        } while (r < 0 && errno == EINTR);
        if (r < 0) l->c->stats.write_errors++;
    }
    l->npending = 0;
}

/* A miss: Python's slow path handles it, with the GIL and without the cache's mutex. */
static int punt(Loop *l, int endpoint, const uint8_t *packet, size_t size) {
    PyEval_RestoreThread(l->saved);
    PyObject *result = endpoint == NONE
        ? PyObject_CallFunction(l->on_return, "y#", (const char *)packet, (Py_ssize_t)size)
        : PyObject_CallFunction(l->on_forward, "iy#", endpoint, (const char *)packet, (Py_ssize_t)size);
    Py_XDECREF(result);
    l->saved = PyEval_SaveThread();
    return result == NULL ? -1 : 0;
}

static void encapsulate(Loop *l, const Entry *e, int direction, uint8_t *inner, size_t size) {
    uint8_t *start = inner - AWS_HEADER - OUTER;
    size_t udp = 8 + AWS_HEADER + size;
    memcpy(inner - AWS_HEADER, e->header[direction], AWS_HEADER);
    start[0] = 0x45;
    start[1] = 0;
    put16(start + 2, (uint16_t)(OUTER + AWS_HEADER + size));
    put16(start + 4, 0);
    put16(start + 6, 0x4000);
    start[8] = 64;
    start[9] = PROTO_UDP;
    put16(start + 10, 0);
    memcpy(start + 12, l->address, 4);
    memcpy(start + 16, l->c->targets[e->target], 4);
    put16(start + 20, e->source_port);
    put16(start + 22, GENEVE_PORT);
    put16(start + 24, (uint16_t)udp);
    put16(start + 26, 0);
    struct iovec *iov = &l->tx_iov[l->ntx];
    iov->iov_base = start;
    iov->iov_len = OUTER + udp - 8;
    struct msghdr *m = &l->tx_msgs[l->ntx].msg_hdr;
    memset(m, 0, sizeof *m);
    m->msg_name = &l->target_addresses[e->target];
    m->msg_namelen = sizeof(struct sockaddr_in);
    m->msg_iov = iov;
    m->msg_iovlen = 1;
    l->ntx++;
}

static int pump_tun(Loop *l, int endpoint, int fd) {
    Cache *c = l->c;
    int count = 0;
    while (count < l->batch) {
        uint8_t *slot = l->in_buffers + (size_t)count * (HEADROOM + BUF_SIZE);
        ssize_t r = read(fd, slot + HEADROOM, BUF_SIZE);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            l->error = errno;
            return -1;
        }
        l->in_sizes[count++] = (size_t)r;
    }
    if (count == 0) return 0;
    c->stats.batches++;
    double now = monotonic();
    lock_raw(c);
    for (int k = 0; k < count; k++) {
        uint8_t *inner = l->in_buffers + (size_t)k * (HEADROOM + BUF_SIZE) + HEADROOM;
        int direction;
        int32_t i = forward_lookup(c, endpoint, inner, l->in_sizes[k], now, &direction);
        if (i != NONE) {
            if (forward_count(c, i, direction, l->in_sizes[k], now) < 0) {
                unlock_raw(c);
                l->error = ENOMEM;
                return -1;
            }
            encapsulate(l, &c->entries[i], direction, inner, l->in_sizes[k]);
            c->stats.forwarded++;
            continue;
        }
        c->stats.forward_misses++;
        unlock_raw(c);
        flush_tx(l);
        if (punt(l, endpoint, inner, l->in_sizes[k]) < 0) return -1;
        now = monotonic();
        lock_raw(c);
    }
    unlock_raw(c);
    flush_tx(l);
    return 0;
}

static int pump_returns(Loop *l) {
    Cache *c = l->c;
    int count;
    do {
        count = recvmmsg(l->rx, l->rx_msgs, (unsigned int)l->batch, MSG_DONTWAIT, NULL);
    } while (count < 0 && errno == EINTR);
    if (count < 0) {
        if (errno == EAGAIN) return 0;
        l->error = errno;
        return -1;
    }
    if (count == 0) return 0;
    c->stats.batches++;
    double now = monotonic();
    lock_raw(c);
    for (int k = 0; k < count; k++) {
        const uint8_t *p = l->rx_buffers + (size_t)k * BUF_SIZE;
        size_t n = l->rx_msgs[k].msg_len;
        int32_t i = NONE;
        int direction = 0, sport = 0;
        size_t start = 0, end = 0;
        if (n >= 28 && p[0] >> 4 == 4 && p[9] == PROTO_UDP && memcmp(p + 16, l->address, 4) == 0) {
            size_t ihl = (size_t)(p[0] & 0x0F) * 4;
            if (ihl >= 20 && n >= ihl + 8) {
                size_t length = be16(p + ihl + 4);
                sport = be16(p + ihl);
                start = ihl + 8;
                end = ihl + (length > 8 ? length : 8);
                if (end > n) end = n;
                i = return_lookup(c, p + 12, sport, be16(p + ihl + 2), p + start, end - start, now, &direction);
            }
        }
        if (i != NONE) {
            if (return_count(c, i, direction, sport, end - start - AWS_HEADER, now) < 0) {
                unlock_raw(c);
                l->error = ENOMEM;
                return -1;
            }
            Pending *d = &l->pending[l->npending++];
            d->fd = c->tun_fds[c->entries[i].key.endpoint];
            d->data = p + start + AWS_HEADER;
            d->size = end - start - AWS_HEADER;
            c->stats.delivered++;
            continue;
        }
        c->stats.return_misses++;
        unlock_raw(c);
        flush_pending(l);
        if (punt(l, NONE, p, n) < 0) return -1;
        now = monotonic();
        lock_raw(c);
    }
    unlock_raw(c);
    flush_pending(l);
    return 0;
}

static int loop_buffers(Loop *l) {
    size_t batch = (size_t)l->batch;
    l->in_buffers = PyMem_RawMalloc(batch * (HEADROOM + BUF_SIZE));
    l->in_sizes = PyMem_RawCalloc(batch, sizeof(size_t));
    l->rx_buffers = PyMem_RawMalloc(batch * BUF_SIZE);
    l->rx_msgs = PyMem_RawCalloc(batch, sizeof(struct mmsghdr));
    l->rx_iov = PyMem_RawCalloc(batch, sizeof(struct iovec));
    l->tx_msgs = PyMem_RawCalloc(batch, sizeof(struct mmsghdr));
    l->tx_iov = PyMem_RawCalloc(batch, sizeof(struct iovec));
    l->pending = PyMem_RawCalloc(batch, sizeof(Pending));
    l->target_addresses = PyMem_RawCalloc((size_t)l->c->ntargets + 1, sizeof(struct sockaddr_in));
    if (!l->in_buffers || !l->in_sizes || !l->rx_buffers || !l->rx_msgs || !l->rx_iov || !l->tx_msgs || !l->tx_iov ||
        !l->pending || !l->target_addresses)
        return -1;
    for (size_t k = 0; k < batch; k++) {
        l->rx_iov[k].iov_base = l->rx_buffers + k * BUF_SIZE;
        l->rx_iov[k].iov_len = BUF_SIZE;
        l->rx_msgs[k].msg_hdr.msg_iov = &l->rx_iov[k];
        l->rx_msgs[k].msg_hdr.msg_iovlen = 1;
    }
    for (int t = 0; t < l->c->ntargets; t++) {
        l->target_addresses[t].sin_family = AF_INET;
        memcpy(&l->target_addresses[t].sin_addr, l->c->targets[t], 4);
    }
    return 0;
}

static void loop_free(Loop *l) {
    PyMem_RawFree(l->in_buffers);
    PyMem_RawFree(l->in_sizes);
    PyMem_RawFree(l->rx_buffers);
    PyMem_RawFree(l->rx_msgs);
    PyMem_RawFree(l->rx_iov);
    PyMem_RawFree(l->tx_msgs);
    PyMem_RawFree(l->tx_iov);
    PyMem_RawFree(l->pending);
    PyMem_RawFree(l->target_addresses);
    PyMem_RawFree(l->tuns);
}

static PyObject *Cache_serve(Cache *c, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"tuns", "rx", "tx", "address", "on_forward", "on_return", "batch", NULL};
    PyObject *tuns;
    Py_buffer address;
    Loop l;
    memset(&l, 0, sizeof l);
    l.c = c;
    l.batch = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oiiy*OO|i:serve", names, &tuns, &l.rx, &l.tx, &address, &l.on_forward,
                                     &l.on_return, &l.batch))
        return NULL;
    int ep = -1;
    PyObject *result = NULL, *tun_list = NULL;
    if (address.len != 4 || l.batch < 1 || l.batch > MAX_BATCH || c->clock != NULL || c->serving) {
        PyErr_SetString(PyExc_ValueError, "serve: expected a 4-byte address, 1 <= batch <= 1024, no injected clock, "
                                          "and no other serve running");
        goto done;
    }
    memcpy(l.address, address.buf, 4);
    tun_list = PySequence_Fast(tuns, "tuns: expected a sequence of fds");
    if (tun_list == NULL) goto done;
    l.ntuns = (int)PySequence_Fast_GET_SIZE(tun_list);
    if (l.ntuns > c->nendpoints) {
        PyErr_Format(PyExc_ValueError, "serve: %d tun fds for %d endpoints", l.ntuns, c->nendpoints);
        goto done;
    }
    l.tuns = PyMem_RawCalloc((size_t)l.ntuns + 1, sizeof(int));
    if (l.tuns == NULL || loop_buffers(&l) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (int k = 0; k < l.ntuns; k++) {
        l.tuns[k] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(tun_list, k));
        if (l.tuns[k] == -1 && PyErr_Occurred()) goto done;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    struct epoll_event rx_event = {.events = EPOLLIN, .data.u64 = EVENT_RX};
    struct epoll_event stop_event = {.events = EPOLLIN, .data.u64 = EVENT_STOP};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, l.rx, &rx_event) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, c->stop_fd, &stop_event) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    c->serving = 1;
    l.saved = PyEval_SaveThread();
    /* Endpoints added before or while serve runs are watched under the mutex (see Cache_watch). */
    lock_raw(c);
    for (int k = 0; k < l.ntuns; k++) c->tun_fds[k] = l.tuns[k];
    c->epoll_fd = ep;
    for (int e = 0; e < c->nendpoints && !l.error; e++)
        if (c->tun_fds[e] >= 0 && watch_fd(c, e) < 0) l.error = errno;
    unlock_raw(c);
    while (!c->stopping && !l.error) {
        struct epoll_event events[16];
        int n = epoll_wait(ep, events, 16, 500);
        if (n < 0) {
            if (errno == EINTR) continue;
            l.error = errno;
            break;
        }
        for (int k = 0; k < n && !c->stopping; k++) {
            uint64_t which = events[k].data.u64;
            int rc = which == EVENT_RX     ? pump_returns(&l)
                     : which == EVENT_STOP ? 0
                                           : pump_tun(&l, (int)(which >> 32), (int)(uint32_t)which);
            if (rc < 0) goto stopped;
        }
        if (l.error) break;
    }
stopped:
    lock_raw(c);
    c->epoll_fd = -1;
    unlock_raw(c);
    PyEval_RestoreThread(l.saved);
    c->serving = 0;
    if (l.error) {
        errno = l.error;
        PyErr_SetFromErrno(PyExc_OSError);
    } else if (!PyErr_Occurred()) {
        result = Py_NewRef(Py_None);
    }
done:
    if (ep >= 0) close(ep);
    Py_XDECREF(tun_list);
    loop_free(&l);
    PyBuffer_Release(&address);
    return result;
}

static PyMethodDef Cache_methods[] = {
    {"acquire", (PyCFunction)Cache_acquire, METH_NOARGS, "Take the cache's mutex (the GIL is released while waiting)."},
    {"release", (PyCFunction)Cache_release, METH_NOARGS, "Release the mutex taken by acquire()."},
    {"put", (PyCFunction)Cache_put, METH_VARARGS,
     "put(flow, cookie, endpoint, protocol, low, low_port, high, high_port, initiator, target, source_port, header, "
     "reply_header, idle_limit, last_seen): cache a flow Python decided (its headers from and to the initiator), "
     "or refresh its target, limit and last_seen."},
    {"remove", (PyCFunction)Cache_remove, METH_O, "remove(cookie) -> whether the flow was cached."},
    {"set_target", (PyCFunction)Cache_set_target, METH_VARARGS, "set_target(cookie, target) -> whether it was cached."},
    {"add_endpoint", (PyCFunction)Cache_add_endpoint, METH_VARARGS,
     "add_endpoint(zone) -> the index of an endpoint created at run time (zone: a known zone index or the next one)."},
    {"watch", (PyCFunction)Cache_watch, METH_VARARGS,
     "watch(endpoint, fd): the endpoint's tun fd; a running serve() starts reading it at once, a later one at its start."},
    {"forward", (PyCFunction)Cache_forward, METH_VARARGS,
     "forward(endpoint, inner) -> (target, source_port, geneve_payload), or None for Python's slow path."},
    {"back", (PyCFunction)Cache_back, METH_VARARGS,
     "back(source, source_port, dest_port, geneve_payload) -> (endpoint, inner), or None for Python's slow path."},
    {"drain", (PyCFunction)Cache_drain, METH_NOARGS, "What hits changed since the last drain (see the source), or None."},
    {"cookies", (PyCFunction)Cache_cookies, METH_NOARGS, "The set of cached cookies."},
    {"stats", (PyCFunction)Cache_stats, METH_NOARGS, "Hits and misses per direction, serve() batches and I/O errors."},
    {"serve", (PyCFunction)(void (*)(void))Cache_serve, METH_VARARGS | METH_KEYWORDS,
     "serve(tuns, rx, tx, address, on_forward, on_return, batch=64): the data path until stop(); tuns are the first "
     "endpoints' fds (later ones: watch), misses go to "
     "on_forward(endpoint, inner) and on_return(ipv4_packet)."},
    {"stop", (PyCFunction)Cache_stop, METH_NOARGS, "Make serve() return (from any thread)."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Cache_sequence = {.sq_length = (lenfunc)Cache_len};

static PyTypeObject CacheType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "harness.emulator._fastpath.Cache",
    .tp_basicsize = sizeof(Cache),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Cache(endpoint_zones, targets, stickiness, strict, clock=None, cookie_bits=32): flows decided by Python, "
              "replayed in C; the cookie word's bits above cookie_bits carry the packet's direction (tencent).",
    .tp_new = Cache_new,
    .tp_dealloc = (destructor)Cache_dealloc,
    .tp_methods = Cache_methods,
    .tp_as_sequence = &Cache_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath", "The emulator's compiled fast path (see harness/emulator/fastpath.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&CacheType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Cache", (PyObject *)&CacheType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "MAX_INNER", MAX_INNER);
    return m;
}
