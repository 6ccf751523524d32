/*
 * The lab guest's ledger: a tiny HTTP/1.1 keep-alive server with the lab ledger's probe contract.
 *
 *   GET  /healthz         -> 200 {"status":"ok","boot_id":str,"pid":int,"postings":int}
 *   POST /transfers       {"id":str,"from":str,"to":str,"amount":int}
 *                          -> 201 {"id","seq","status":"committed"}; a repeated id -> 200, same body + "replayed":true;
 *                             400 {"error": "..."} naming the bad field
 *   GET  /transfers/{id}  -> 200 {"id","seq","from","to","amount","postings":1} or 404 {"error":"not found"}
 *   POST /dirty           {"bytes_per_s":int,"working_set_bytes":int} -> 200, the same two figures: from now on the
 *                          guest dirties that many bytes of its memory per second (one write per 4 KiB page, cycling
 *                          over a working set of that size); bytes_per_s 0 stops it. GET /dirty reads the setting.
 *   GET  /journal         -> 200 {"device","capacity","postings","records","matching","first_mismatch"}: every posting
 *                          read back from the journal disk (404 when the ledger runs without one)
 *
 * With a journal device (second argument, the disk guest's virtio disk; the third caps the journal at that many MiB
 * from the start of the device, default all of it), each new posting is written to its own
 * 1 KiB record, posting n at byte (n - 1) * 1024, with O_DIRECT | O_DSYNC before the 201 is sent: the write goes
 * to the virtual disk, not the guest's page cache. GET /journal reads the records back the same way, so on the
 * destination of a copy-storage migration it reads that host's disk (the page cache travels with RAM; O_DIRECT
 * does not use it). A posting the journal cannot take is refused: 507 when the journal is full, 503 on a write error.
 *
 * Storage is in guest RAM on purpose: a live migration must carry RAM across hosts, so a posting
 * acknowledged before the migration and read back after it proves the guest's state moved intact.
 * One process, one poll() loop, no threads: the guest has one vCPU under TCG. The dirtying runs in the same loop,
 * between requests, woken every DIRTY_TICK_MS, so a migration meets a guest whose dirty rate is known.
 * Built statically at lab build time (gcc -static) so the busybox initramfs needs no libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 512
#define IN_CAP 16384
#define FIELD_MAX 256
#define PAGE 4096
#define DIRTY_TICK_MS 10
#define JOURNAL_RECORD 1024
#define JOURNAL_MAGIC "LDJ1"
#define JOURNAL_BATCH 64 /* records per read-back */

struct posting {
    char *id, *from, *to;
    long long amount;
    long long seq;
};

struct conn {
    int fd;
    size_t in_len;
    char in[IN_CAP];
    char *out;
    size_t out_len, out_off, out_cap;
    int close_after;
};

static struct posting *postings;
static size_t n_postings, cap_postings;
static long long *index_slots; /* open addressing: posting index + 1, 0 = empty */
static size_t index_cap;
static char boot_id[64] = "unknown";

static unsigned char *dirty_area;
static size_t dirty_pages, dirty_next;
static long long dirty_rate, dirty_set; /* bytes/s; working set in bytes */
static double dirty_owed;                /* pages due but not yet written */
static struct timespec dirty_last;

struct journal_record { /* one posting on disk; the rest of its JOURNAL_RECORD bytes are zero */
    char magic[8];
    long long seq, amount;
    char id[FIELD_MAX], from[FIELD_MAX], to[FIELD_MAX];
};

static int journal_fd = -1;
static const char *journal_path;
static long long journal_capacity; /* records */
static unsigned char *journal_buf; /* JOURNAL_BATCH records, aligned for O_DIRECT */

static double now_s(struct timespec *t) {
    clock_gettime(CLOCK_MONOTONIC, t);
    return (double)t->tv_sec + (double)t->tv_nsec / 1e9;
}

static const char *set_dirtying(long long rate, long long working_set) {
    if (rate < 0 || working_set < 0) return "bytes_per_s and working_set_bytes must be >= 0";
    if (rate > 0 && working_set < PAGE) return "working_set_bytes must be at least one page (4096)";
    free(dirty_area);
    dirty_area = NULL;
    dirty_pages = dirty_next = 0;
    dirty_owed = 0;
    dirty_rate = dirty_set = 0;
    if (rate == 0) return NULL;
    dirty_pages = (size_t)(working_set / PAGE);
    dirty_area = malloc(dirty_pages * PAGE);
    if (!dirty_area) { dirty_pages = 0; return "cannot allocate the working set"; }
    memset(dirty_area, 1, dirty_pages * PAGE); /* backed now: the first round copies it like any guest memory */
    dirty_rate = rate;
    dirty_set = (long long)dirty_pages * PAGE;
    now_s(&dirty_last);
    return NULL;
}

/* Writes the pages due since the last tick, one byte in each, round-robin over the working set. */
static void dirty_tick(void) {
    if (!dirty_rate) return;
    struct timespec t;
    double elapsed = now_s(&t) - ((double)dirty_last.tv_sec + (double)dirty_last.tv_nsec / 1e9);
    dirty_last = t;
    dirty_owed += elapsed * (double)dirty_rate / PAGE;
    while (dirty_owed >= 1.0) {
        dirty_area[dirty_next * PAGE]++;
        dirty_next = (dirty_next + 1) % dirty_pages;
        dirty_owed -= 1.0;
    }
}

static int json_int(const char *body, size_t len, const char *key, long long *out) {
    char pattern[64], copy[1024];
    if (len >= sizeof copy) return -1;
    memcpy(copy, body, len);
    copy[len] = 0;
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *p = strstr(copy, pattern);
    if (!p) return -1;
    p = strchr(p + strlen(pattern), ':');
    if (!p) return -1;
    char *end;
    *out = strtoll(p + 1, &end, 10);
    return end == p + 1 ? -1 : 0;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void index_grow(void) {
    size_t new_cap = index_cap ? index_cap * 2 : 4096;
    long long *slots = calloc(new_cap, sizeof *slots);
    if (!slots) abort();
    for (size_t i = 0; i < n_postings; i++) {
        size_t j = hash_str(postings[i].id) & (new_cap - 1);
        while (slots[j]) j = (j + 1) & (new_cap - 1);
        slots[j] = (long long)i + 1;
    }
    free(index_slots);
    index_slots = slots;
    index_cap = new_cap;
}

static struct posting *find_posting(const char *id) {
    if (!index_cap) return NULL;
    size_t j = hash_str(id) & (index_cap - 1);
    while (index_slots[j]) {
        struct posting *p = &postings[index_slots[j] - 1];
        if (strcmp(p->id, id) == 0) return p;
        j = (j + 1) & (index_cap - 1);
    }
    return NULL;
}

static struct posting *add_posting(const char *id, const char *from, const char *to, long long amount) {
    if ((n_postings + 1) * 2 > index_cap) index_grow();
    if (n_postings == cap_postings) {
        cap_postings = cap_postings ? cap_postings * 2 : 4096;
        postings = realloc(postings, cap_postings * sizeof *postings);
        if (!postings) abort();
    }
    struct posting *p = &postings[n_postings];
    p->id = strdup(id);
    p->from = strdup(from);
    p->to = strdup(to);
    p->amount = amount;
    p->seq = (long long)n_postings + 1;
    size_t j = hash_str(id) & (index_cap - 1);
    while (index_slots[j]) j = (j + 1) & (index_cap - 1);
    index_slots[j] = (long long)n_postings + 1;
    n_postings++;
    return p;
}

static void out_append(struct conn *c, const char *data, size_t len) {
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + len) cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out) abort();
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
}

static void respond(struct conn *c, int status, const char *body) {
    const char *reason = status == 200 ? "OK" : status == 201 ? "Created" : status == 400 ? "Bad Request"
                       : status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed" : "Error";
    char head[256];
    size_t body_len = strlen(body);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
                     status, reason, body_len, c->close_after ? "Connection: close\r\n" : "");
    out_append(c, head, (size_t)n);
    out_append(c, body, body_len);
}

/* Reads the JSON string starting at *p (just past the opening quote) into out, verbatim (escapes kept,
 * so echoing it back stays valid JSON). Returns 0 on success. */
static int json_string(const char **p, const char *end, char *out, size_t out_size) {
    size_t n = 0;
    while (*p < end && **p != '"') {
        if (**p == '\\') {
            if (n + 2 >= out_size || *p + 1 >= end) return -1;
            out[n++] = *(*p)++;
        }
        if ((unsigned char)**p < 0x20 || n + 1 >= out_size) return -1;
        out[n++] = *(*p)++;
    }
    if (*p >= end) return -1;
    (*p)++;
    out[n] = 0;
    return 0;
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

/* Parses a flat JSON object for the transfer fields. Returns NULL or the error message. */
static const char *parse_transfer(const char *body, size_t len, char *id, char *from, char *to, long long *amount) {
    const char *p = skip_ws(body, body + len), *end = body + len;
    int have_id = 0, have_from = 0, have_to = 0, have_amount = 0;
    if (p >= end || *p != '{') return "body must be a JSON object";
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') p = end;
    while (p < end) {
        char key[64], value[FIELD_MAX];
        if (*p != '"') return "body must be a JSON object";
        p++;
        if (json_string(&p, end, key, sizeof key)) return "body must be a JSON object";
        p = skip_ws(p, end);
        if (p >= end || *p != ':') return "body must be a JSON object";
        p = skip_ws(p + 1, end);
        if (p >= end) return "body must be a JSON object";
        int is_string = *p == '"';
        if (is_string) {
            p++;
            if (json_string(&p, end, value, sizeof value)) return "a string value is malformed or too long";
        } else {
            size_t n = 0;
            while (p < end && *p != ',' && *p != '}' && *p != ' ' && *p != '\r' && *p != '\n' && *p != '\t') {
                if (n + 1 >= sizeof value) return "a value is too long";
                value[n++] = *p++;
            }
            value[n] = 0;
        }
        if (strcmp(key, "id") == 0 || strcmp(key, "from") == 0 || strcmp(key, "to") == 0) {
            if (!is_string) return strcmp(key, "id") == 0 ? "field 'id' must be a string"
                                   : strcmp(key, "from") == 0 ? "field 'from' must be a string"
                                                              : "field 'to' must be a string";
            if (strcmp(key, "id") == 0) { strcpy(id, value); have_id = 1; }
            else if (strcmp(key, "from") == 0) { strcpy(from, value); have_from = 1; }
            else { strcpy(to, value); have_to = 1; }
        } else if (strcmp(key, "amount") == 0) {
            char *stop;
            if (is_string || !value[0]) return "field 'amount' must be an integer";
            errno = 0;
            *amount = strtoll(value, &stop, 10);
            if (*stop || errno) return "field 'amount' must be an integer";
            have_amount = 1;
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',') p = skip_ws(p + 1, end);
        else if (p < end && *p == '}') p = end;
        else return "body must be a JSON object";
    }
    if (!have_id || !id[0]) return "field 'id' is required (a non-empty string)";
    if (!have_from) return "field 'from' is required";
    if (!have_to) return "field 'to' is required";
    if (!have_amount) return "field 'amount' is required";
    return NULL;
}

static int journal_open(const char *path, long long cap_mib) {
    journal_fd = open(path, O_RDWR | O_DIRECT | O_DSYNC);
    if (journal_fd < 0) return -1;
    off_t size = lseek(journal_fd, 0, SEEK_END);
    if (size < JOURNAL_RECORD || posix_memalign((void **)&journal_buf, 4096, JOURNAL_RECORD * JOURNAL_BATCH)) return -1;
    journal_path = path;
    journal_capacity = size / JOURNAL_RECORD;
    if (cap_mib > 0 && cap_mib * 1024 * 1024 / JOURNAL_RECORD < journal_capacity)
        journal_capacity = cap_mib * 1024 * 1024 / JOURNAL_RECORD;
    return 0;
}

/* Writes posting `seq` (not yet in RAM) to its record: 0, or 507 / 503 as the HTTP status to refuse it with. */
static int journal_write(long long seq, const char *id, const char *from, const char *to, long long amount) {
    if (journal_fd < 0) return 0;
    if (seq > journal_capacity) return 507;
    memset(journal_buf, 0, JOURNAL_RECORD);
    struct journal_record *r = (struct journal_record *)journal_buf;
    strcpy(r->magic, JOURNAL_MAGIC);
    r->seq = seq;
    r->amount = amount;
    strcpy(r->id, id);
    strcpy(r->from, from);
    strcpy(r->to, to);
    ssize_t w = pwrite(journal_fd, journal_buf, JOURNAL_RECORD, (off_t)(seq - 1) * JOURNAL_RECORD);
    return w == JOURNAL_RECORD ? 0 : 503;
}

static int record_matches(const struct journal_record *r, const struct posting *p) {
    return strcmp(r->magic, JOURNAL_MAGIC) == 0 && r->seq == p->seq && r->amount == p->amount &&
           strcmp(r->id, p->id) == 0 && strcmp(r->from, p->from) == 0 && strcmp(r->to, p->to) == 0;
}

/* Reads every record of postings 1..n_postings (and counts any record written past them) into `out`. */
static void journal_report(char *out, size_t out_size) {
    long long records = 0, matching = 0, first_mismatch = -1;
    for (long long base = 0; base < journal_capacity; base += JOURNAL_BATCH) {
        long long batch = journal_capacity - base < JOURNAL_BATCH ? journal_capacity - base : JOURNAL_BATCH;
        ssize_t r = pread(journal_fd, journal_buf, (size_t)(batch * JOURNAL_RECORD), (off_t)base * JOURNAL_RECORD);
        if (r != batch * JOURNAL_RECORD) {
            snprintf(out, out_size, "{\"error\":\"journal read failed at record %lld: %s\"}", base + 1,
                     r < 0 ? strerror(errno) : "short read");
            return;
        }
        int any = 0;
        for (long long k = 0; k < batch; k++) {
            const struct journal_record *rec = (const struct journal_record *)(journal_buf + k * JOURNAL_RECORD);
            long long seq = base + k + 1;
            int present = strcmp(rec->magic, JOURNAL_MAGIC) == 0;
            records += present;
            any |= present;
            if (seq <= (long long)n_postings && record_matches(rec, &postings[seq - 1])) matching++;
            else if (seq <= (long long)n_postings && first_mismatch < 0) first_mismatch = seq;
        }
        if (!any && base >= (long long)n_postings) break; /* past the postings and a whole batch empty: nothing more */
    }
    snprintf(out, out_size,
             "{\"device\":\"%s\",\"capacity\":%lld,\"postings\":%zu,\"records\":%lld,\"matching\":%lld,"
             "\"first_mismatch\":%lld}",
             journal_path, journal_capacity, n_postings, records, matching, first_mismatch);
}

static void handle_request(struct conn *c, const char *method, const char *path, const char *body, size_t body_len) {
    char buf[1024];
    if (strcmp(path, "/healthz") == 0 && strcmp(method, "GET") == 0) {
        snprintf(buf, sizeof buf, "{\"status\":\"ok\",\"boot_id\":\"%s\",\"pid\":%d,\"postings\":%zu}", boot_id,
                 (int)getpid(), n_postings);
        respond(c, 200, buf);
    } else if (strcmp(path, "/transfers") == 0 && strcmp(method, "POST") == 0) {
        char id[FIELD_MAX], from[FIELD_MAX], to[FIELD_MAX];
        long long amount = 0;
        const char *err = parse_transfer(body, body_len, id, from, to, &amount);
        if (err) {
            snprintf(buf, sizeof buf, "{\"error\":\"%s\"}", err);
            respond(c, 400, buf);
            return;
        }
        struct posting *p = find_posting(id);
        int replayed = p != NULL;
        if (!p) {
            int refused = journal_write((long long)n_postings + 1, id, from, to, amount);
            if (refused) {
                respond(c, refused, refused == 507 ? "{\"error\":\"journal full\"}" : "{\"error\":\"journal write failed\"}");
                return;
            }
            p = add_posting(id, from, to, amount);
        }
        snprintf(buf, sizeof buf, "{\"id\":\"%s\",\"seq\":%lld,\"status\":\"committed\"%s}", p->id, p->seq,
                 replayed ? ",\"replayed\":true" : "");
        respond(c, replayed ? 200 : 201, buf);
    } else if (strncmp(path, "/transfers/", 11) == 0 && strcmp(method, "GET") == 0) {
        struct posting *p = find_posting(path + 11);
        if (!p) {
            respond(c, 404, "{\"error\":\"not found\"}");
            return;
        }
        snprintf(buf, sizeof buf, "{\"id\":\"%s\",\"seq\":%lld,\"from\":\"%s\",\"to\":\"%s\",\"amount\":%lld,\"postings\":1}",
                 p->id, p->seq, p->from, p->to, p->amount);
        respond(c, 200, buf);
    } else if (strcmp(path, "/dirty") == 0 && (strcmp(method, "POST") == 0 || strcmp(method, "GET") == 0)) {
        if (strcmp(method, "POST") == 0) {
            long long rate, set;
            if (json_int(body, body_len, "bytes_per_s", &rate) || json_int(body, body_len, "working_set_bytes", &set)) {
                respond(c, 400, "{\"error\":\"give bytes_per_s and working_set_bytes as integers\"}");
                return;
            }
            const char *err = set_dirtying(rate, set);
            if (err) {
                snprintf(buf, sizeof buf, "{\"error\":\"%s\"}", err);
                respond(c, 400, buf);
                return;
            }
        }
        snprintf(buf, sizeof buf, "{\"bytes_per_s\":%lld,\"working_set_bytes\":%lld}", dirty_rate, dirty_set);
        respond(c, 200, buf);
    } else if (strcmp(path, "/journal") == 0 && strcmp(method, "GET") == 0) {
        if (journal_fd < 0) {
            respond(c, 404, "{\"error\":\"this ledger runs without a journal\"}");
            return;
        }
        journal_report(buf, sizeof buf);
        respond(c, strncmp(buf, "{\"error\"", 9) == 0 ? 500 : 200, buf);
    } else if (strcmp(path, "/healthz") == 0 || strcmp(path, "/transfers") == 0 || strncmp(path, "/transfers/", 11) == 0 ||
               strcmp(path, "/dirty") == 0 || strcmp(path, "/journal") == 0) {
        respond(c, 405, "{\"error\":\"method not allowed\"}");
    } else {
        respond(c, 404, "{\"error\":\"not found\"}");
    }
}

/* Serves every complete request in the input buffer. Returns -1 when the connection must be dropped. */
static int serve_buffered(struct conn *c) {
    for (;;) {
        char *head_end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!head_end) return c->in_len >= IN_CAP ? -1 : 0;
        size_t head_len = (size_t)(head_end - c->in) + 4;
        char method[16], path[FIELD_MAX + 16], version[16];
        *head_end = 0;
        if (sscanf(c->in, "%15s %271s %15s", method, path, version) != 3) return -1;
        size_t content_length = 0;
        int close_req = strcmp(version, "HTTP/1.0") == 0;
        for (char *line = strstr(c->in, "\r\n"); line && line < head_end; line = strstr(line + 2, "\r\n")) {
            char *h = line + 2;
            if (strncasecmp(h, "content-length:", 15) == 0) content_length = strtoul(h + 15, NULL, 10);
            else if (strncasecmp(h, "connection:", 11) == 0) {
                char *v = h + 11;
                while (*v == ' ') v++;
                if (strncasecmp(v, "close", 5) == 0) close_req = 1;
                else if (strncasecmp(v, "keep-alive", 10) == 0) close_req = 0;
            }
        }
        if (head_len + content_length > IN_CAP) return -1;
        if (c->in_len < head_len + content_length) {
            *head_end = '\r';
            return 0;
        }
        c->close_after = close_req;
        handle_request(c, method, path, c->in + head_len, content_length);
        size_t used = head_len + content_length;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        if (c->close_after) return 0;
    }
}

static void read_boot_id(void) {
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY);
    if (fd < 0) return;
    ssize_t n = read(fd, boot_id, sizeof boot_id - 1);
    close(fd);
    if (n <= 0) return;
    boot_id[n] = 0;
    char *nl = strchr(boot_id, '\n');
    if (nl) *nl = 0;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    signal(SIGPIPE, SIG_IGN);
    read_boot_id();
    if (argc > 2 && journal_open(argv[2], argc > 3 ? atoll(argv[3]) : 0)) {
        perror("ledger: journal");
        return 1;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = {INADDR_ANY}};
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 512)) {
        perror("ledger: bind/listen");
        return 1;
    }
    fprintf(stderr, "ledger: listening on :%d boot_id %s journal %s (%lld records)\n", port, boot_id,
            journal_path ? journal_path : "none", journal_capacity);
    static struct conn *conns[MAX_CONNS];
    static struct pollfd fds[MAX_CONNS + 1];
    for (;;) {
        int n = 0;
        fds[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int i = 0; i < MAX_CONNS; i++) {
            if (!conns[i]) continue;
            short ev = conns[i]->out_len > conns[i]->out_off ? POLLOUT : POLLIN;
            fds[n++] = (struct pollfd){.fd = conns[i]->fd, .events = ev};
        }
        int ready = poll(fds, (nfds_t)n, dirty_rate ? DIRTY_TICK_MS : -1);
        dirty_tick();
        if (ready < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (fds[0].revents & POLLIN) {
            int cfd;
            while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                int slot = -1;
                for (int i = 0; i < MAX_CONNS && slot < 0; i++)
                    if (!conns[i]) slot = i;
                if (slot < 0) { close(cfd); continue; }
                setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conns[slot] = calloc(1, sizeof(struct conn));
                conns[slot]->fd = cfd;
            }
        }
        for (int k = 1; k < n; k++) {
            struct conn *c = NULL;
            int slot = -1;
            for (int i = 0; i < MAX_CONNS; i++)
                if (conns[i] && conns[i]->fd == fds[k].fd) { c = conns[i]; slot = i; break; }
            if (!c || !fds[k].revents) continue;
            int drop = 0;
            if (fds[k].revents & POLLIN) {
                ssize_t r = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
                if (r <= 0) drop = !(r < 0 && (errno == EAGAIN || errno == EINTR));
                else {
                    c->in_len += (size_t)r;
                    if (serve_buffered(c) < 0) drop = 1;
                }
            } else if (fds[k].revents & (POLLERR | POLLHUP)) {
                drop = 1;
            }
            while (!drop && c->out_len > c->out_off) {
                ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (w < 0) { drop = !(errno == EAGAIN || errno == EINTR); break; }
                c->out_off += (size_t)w;
            }
            if (!drop && c->out_off == c->out_len) {
                c->out_off = c->out_len = 0;
                if (c->close_after) drop = 1;
            }
            if (drop) {
                close(c->fd);
                free(c->out);
                free(c);
                conns[slot] = NULL;
            }
        }
    }
}
