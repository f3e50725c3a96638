/*
 * hearty-loadgen: a closed-loop HTTP load generator for the Hearty gateway.
 *
 * One thread drives libcurl's multi interface.  Each virtual client owns one
 * easy handle that is re-added to the multi handle for every request, so its
 * settings stay put and the multi handle's connection cache hands the same
 * keep-alive HTTP/1.1 connections back.  A client issues its next request as
 * soon as its previous one has finished (closed loop), or after a random
 * pause of 0..--delay-ms milliseconds when one is given (siege's -d: users
 * who think between requests; the first request waits too, so the clients
 * do not all start at once), until --requests have been issued or
 * --duration-max seconds have passed, whichever comes first.  Latencies are
 * measured from the moment a request is handed to libcurl, pauses excluded.
 *
 * Modes:
 *   order   POST /orders {"customerId":"bench-<k>","item":"toast-set","qty":1..3,
 *           "price":4500}; the orderId of every 201 answer is written to
 *           --orders-file when one is given.
 *   cancel  POST /orders/{id}/cancel for the ids of --orders-file, in order
 *           (wrapping round when --requests exceeds the ids); the ids answered
 *           2xx are written to --ok-file when one is given (once per answer).
 *   read    GET /orders/{id} and GET /mileageViews/customers/bench-<k>, half
 *           and half; only the latter when no --orders-file is given.
 *
 * Besides the overall latency and status counts, the report gives latency
 * percentiles per HTTP status ("latency_by_status_ms"), how many answers of
 * each status carried a Retry-After header ("retry_after") and how many error
 * answers carried each error code ("error_codes", from the JSON error shape
 * {"error":{"code":...}}): enough to tell fast refusals from slow failures.
 *
 * The result is one JSON object on stdout; diagnostics go to stderr.  Exit
 * status: 0 when the run completed (whatever the HTTP answers were), 1 on a
 * runtime failure (libcurl set-up, files), 2 on a usage error.
 *
 * Every buffer is bounded: URLs and bodies are built with snprintf into fixed
 * arrays and checked for truncation, answers are kept up to RESP_CAP bytes
 * (the rest is counted and dropped), the latency arrays hold at most
 * --requests entries each, the id list at most MAX_IDS and the error codes
 * CODES_MAX distinct ones.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REQUESTS 10000000L
#define MAX_CONCURRENCY 10000L
#define MAX_CUSTOMERS 1000000L
#define MAX_DURATION 86400L
#define MAX_TIMEOUT_MS 600000L
#define MAX_IDS 10000000L
#define MAX_ID 9007199254740992LL /* 2^53, the API's id bound */

#define BASE_CAP 384   /* --url, without a trailing slash */
#define URL_CAP 512    /* base + path */
#define BODY_CAP 192   /* an order body */
#define RESP_CAP 4096  /* bytes of an answer kept for parsing */
#define SAMPLE_CAP 240 /* bytes of an answer kept as an example */
#define STATUS_CAP 600 /* HTTP statuses 0..599 counted one by one */
#define ERR_CAP 128    /* CURLcode values counted one by one */
#define SAMPLES_MAX 8  /* distinct non-2xx statuses with an example */
#define CODES_MAX 16   /* distinct error codes counted one by one */
#define CODE_CAP 48    /* bytes of an error code kept */

enum mode { MODE_ORDER, MODE_CANCEL, MODE_READ };

enum route { ROUTE_POST_ORDER, ROUTE_CANCEL, ROUTE_GET_ORDER, ROUTE_GET_VIEW, ROUTE_COUNT };

static const char *const route_names[ROUTE_COUNT] = {
    "POST /orders",
    "POST /orders/{id}/cancel",
    "GET /orders/{id}",
    "GET /mileageViews/customers/{cid}",
};

struct options {
  char base[BASE_CAP];     /* gateway base URL, no trailing slash */
  enum mode mode;
  long requests;           /* hard bound on requests issued */
  long concurrency;        /* virtual clients */
  long customers;          /* customer ids bench-1..bench-K */
  long duration_max;       /* seconds after which nothing new is issued */
  long timeout_ms;         /* per-request total timeout */
  long delay_ms;           /* random pause 0..delay_ms before each request */
  unsigned long long seed; /* PRNG seed for qty and customer choice */
  const char *orders_file; /* ids in (cancel, read) or out (order) */
  const char *ok_file;     /* cancel: ids answered 2xx, out */
  const char *latency_file; /* one "status microseconds" line per answer, out */
};

struct client {
  CURL *easy;
  char url[URL_CAP];
  char body[BODY_CAP];
  char resp[RESP_CAP + 1]; /* NUL-terminated prefix of the answer */
  size_t resp_len;         /* bytes kept in resp */
  size_t resp_dropped;     /* bytes beyond RESP_CAP, not kept */
  struct timespec started; /* when the request was handed to libcurl */
  enum route route;
  long long id;            /* the order id of a cancel or GET /orders/{id}, else 0 */
  struct timespec wake;    /* --delay-ms: when the paused client issues its next request */
  int waiting;             /* paused until wake */
  int retry_after;         /* the answer carried a Retry-After header */
};

struct route_stats {
  uint64_t status[STATUS_CAP]; /* index = HTTP status; 0 = transport error */
  uint64_t status_other;       /* statuses >= STATUS_CAP */
};

struct sample {
  long status;
  char text[SAMPLE_CAP + 1];
};

struct code_count {
  char code[CODE_CAP + 1];
  uint64_t n;
};

struct stats {
  struct route_stats routes[ROUTE_COUNT];
  uint64_t errors[ERR_CAP];   /* transport errors by CURLcode */
  uint64_t errors_other;      /* CURLcode >= ERR_CAP */
  uint64_t transport_errors;  /* requests that got no HTTP answer */
  uint64_t new_connections;   /* connections opened (keep-alive check) */
  uint64_t ids_written;       /* order mode: ids written to the file */
  uint64_t ids_unparsed;      /* order mode: 201 without a readable orderId */
  uint64_t bytes_dropped;     /* answer bytes over RESP_CAP */
  uint64_t ids_ok_written;    /* cancel mode: ids written to --ok-file */
  uint64_t retry_after[STATUS_CAP]; /* answers of that status with Retry-After */
  uint32_t *latency_us;       /* one per completed request */
  uint64_t *keyed_us;         /* the same, as status << 32 | microseconds */
  size_t latency_n;
  size_t latency_cap;
  struct sample samples[SAMPLES_MAX];
  size_t samples_n;
  struct code_count codes[CODES_MAX];
  size_t codes_n;
  uint64_t codes_other;       /* error codes beyond CODES_MAX distinct ones */
};

struct run {
  const struct options *opt;
  CURLM *multi;
  struct client *clients;
  struct curl_slist *headers;
  const long long *ids; /* cancel/read: order ids */
  size_t ids_n;
  FILE *ids_out;        /* order mode: where 201 ids go */
  FILE *ok_out;         /* cancel mode: where the ids of 2xx answers go */
  long issued;
  long inflight;
  long waiting;         /* clients paused by --delay-ms */
  uint64_t rng;
  struct stats st;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
  (void)sig;
  stop_requested = 1;
}

static double elapsed_s(const struct timespec *from, const struct timespec *to)
{
  return (double)(to->tv_sec - from->tv_sec) + (double)(to->tv_nsec - from->tv_nsec) / 1e9;
}

static struct timespec now_ts(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts;
}

/* splitmix64: small, good enough to spread qty and customers. */
static uint64_t rng_next(uint64_t *state)
{
  uint64_t z;
  *state += 0x9e3779b97f4a7c15ULL;
  z = *state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* ---- argument parsing ---------------------------------------------------- */

static void usage(FILE *out)
{
  fprintf(out,
          "usage: hearty-loadgen --url BASE [--mode order|cancel|read]\n"
          "         [--requests N (20000)] [--concurrency C (100)] [--customers K (100)]\n"
          "         [--duration-max S (120)] [--timeout-ms MS (10000)] [--seed N (1)]\n"
          "         [--delay-ms MS (0): random pause 0..MS before each request]\n"
          "         [--orders-file F] [--ok-file G] [--latency-file L]\n"
          "order: POST /orders, ids of 201 answers written to F when given\n"
          "cancel: POST /orders/{id}/cancel for the ids in F (required);\n"
          "        the ids answered 2xx are written to G when given\n"
          "read: GET /orders/{id} (ids from F) and GET /mileageViews/customers/{cid}\n"
          "L: one line \"<status> <microseconds>\" per request, in completion order\n"
          "   (status 0: no HTTP answer)\n");
}

/*
 * Parses a whole decimal integer in [lo, hi] into *out.  Returns 0 on success,
 * -1 (after a message naming the option) when the text is empty, has trailing
 * characters, overflows or is out of range.
 */
static int parse_long(const char *name, const char *text, long lo, long hi, long *out)
{
  char *end = NULL;
  long v;

  errno = 0;
  v = strtol(text, &end, 10);
  if(errno || end == text || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "hearty-loadgen: %s must be an integer in %ld..%ld, got '%s'\n", name, lo,
            hi, text);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_mode(const char *text, enum mode *out)
{
  if(strcmp(text, "order") == 0)
    *out = MODE_ORDER;
  else if(strcmp(text, "cancel") == 0)
    *out = MODE_CANCEL;
  else if(strcmp(text, "read") == 0)
    *out = MODE_READ;
  else {
    fprintf(stderr, "hearty-loadgen: --mode must be order, cancel or read, got '%s'\n", text);
    return -1;
  }
  return 0;
}

static int parse_url(const char *text, char *base)
{
  size_t n = strlen(text);

  if(strncmp(text, "http://", 7) != 0 || n <= 7 || n >= BASE_CAP) {
    fprintf(stderr, "hearty-loadgen: --url must be http://host:port, under %d chars\n",
            BASE_CAP);
    return -1;
  }
  memcpy(base, text, n + 1);
  while(n > 7 && base[n - 1] == '/')
    base[--n] = '\0';
  return 0;
}

/* Applies one "--name value" pair.  Returns 0, or -1 on a bad name or value. */
static int apply_option(struct options *o, const char *name, const char *val)
{
  long seed = 0;
  int rc = -1;

  if(strcmp(name, "--url") == 0)
    rc = parse_url(val, o->base);
  else if(strcmp(name, "--mode") == 0)
    rc = parse_mode(val, &o->mode);
  else if(strcmp(name, "--requests") == 0)
    rc = parse_long(name, val, 1, MAX_REQUESTS, &o->requests);
  else if(strcmp(name, "--concurrency") == 0)
    rc = parse_long(name, val, 1, MAX_CONCURRENCY, &o->concurrency);
  else if(strcmp(name, "--customers") == 0)
    rc = parse_long(name, val, 1, MAX_CUSTOMERS, &o->customers);
  else if(strcmp(name, "--duration-max") == 0)
    rc = parse_long(name, val, 1, MAX_DURATION, &o->duration_max);
  else if(strcmp(name, "--timeout-ms") == 0)
    rc = parse_long(name, val, 1, MAX_TIMEOUT_MS, &o->timeout_ms);
  else if(strcmp(name, "--delay-ms") == 0)
    rc = parse_long(name, val, 0, MAX_TIMEOUT_MS, &o->delay_ms);
  else if(strcmp(name, "--seed") == 0) {
    rc = parse_long(name, val, 0, LONG_MAX, &seed);
    o->seed = (unsigned long long)seed;
  }
  else if(strcmp(name, "--orders-file") == 0) {
    o->orders_file = val;
    rc = 0;
  }
  else if(strcmp(name, "--ok-file") == 0) {
    o->ok_file = val;
    rc = 0;
  }
  else if(strcmp(name, "--latency-file") == 0) {
    o->latency_file = val;
    rc = 0;
  }
  else
    fprintf(stderr, "hearty-loadgen: unknown option '%s'\n", name);
  return rc;
}

/*
 * Fills *o from argv.  Returns 0 to run, 1 when --help was asked (usage
 * printed), -1 on a usage error (message printed).
 */
static int parse_args(int argc, char **argv, struct options *o)
{
  int i;

  memset(o, 0, sizeof(*o));
  o->mode = MODE_ORDER;
  o->requests = 20000;
  o->concurrency = 100;
  o->customers = 100;
  o->duration_max = 120;
  o->timeout_ms = 10000;
  o->seed = 1;
  for(i = 1; i < argc; i += 2) {
    if(strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 1;
    }
    if(i + 1 >= argc) {
      fprintf(stderr, "hearty-loadgen: option '%s' needs a value\n", argv[i]);
      return -1;
    }
    if(apply_option(o, argv[i], argv[i + 1]))
      return -1;
  }
  if(o->base[0] == '\0') {
    fprintf(stderr, "hearty-loadgen: --url is required\n");
    return -1;
  }
  if(o->mode == MODE_CANCEL && !o->orders_file) {
    fprintf(stderr, "hearty-loadgen: --mode cancel needs --orders-file\n");
    return -1;
  }
  if(o->ok_file && o->mode != MODE_CANCEL) {
    fprintf(stderr, "hearty-loadgen: --ok-file goes with --mode cancel\n");
    return -1;
  }
  return 0;
}

/* ---- order ids ----------------------------------------------------------- */

/*
 * Parses one line holding a decimal id in 1..2^53 (surrounding blanks
 * allowed).  Returns 1 with *id set, 0 for a blank line, -1 for anything else.
 */
static int parse_id_line(const char *line, long long *id)
{
  char *end = NULL;
  long long v;

  while(*line == ' ' || *line == '\t')
    line++;
  if(*line == '\0' || *line == '\n' || *line == '\r')
    return 0;
  errno = 0;
  v = strtoll(line, &end, 10);
  if(errno || end == line || v < 1 || v > MAX_ID)
    return -1;
  while(*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
    end++;
  if(*end != '\0')
    return -1;
  *id = v;
  return 1;
}

/* Appends id to the growable array *ids (hard cap MAX_IDS).  0 or -1. */
static int ids_push(long long **ids, size_t *n, size_t *cap, long long id)
{
  if(*n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 1024;
    long long *p;
    if(ncap > (size_t)MAX_IDS)
      ncap = (size_t)MAX_IDS;
    if(*n >= ncap)
      return -1;
    p = realloc(*ids, ncap * sizeof(**ids));
    if(!p)
      return -1;
    *ids = p;
    *cap = ncap;
  }
  (*ids)[(*n)++] = id;
  return 0;
}

/*
 * Reads the ids of path, one per line, into a new array (the caller frees
 * *out).  Returns 0, or -1 after a message (unreadable file, a bad line, more
 * than MAX_IDS ids, no ids at all).
 */
static int load_ids(const char *path, long long **out, size_t *out_n)
{
  char line[64];
  long long *ids = NULL;
  size_t n = 0, cap = 0;
  unsigned long lineno = 0;
  int result = -1;
  FILE *f = fopen(path, "r");

  if(!f) {
    fprintf(stderr, "hearty-loadgen: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  while(fgets(line, sizeof(line), f)) {
    long long id = 0;
    int rc = parse_id_line(line, &id);
    lineno++;
    if(rc < 0 || (strchr(line, '\n') == NULL && !feof(f))) {
      fprintf(stderr, "hearty-loadgen: %s:%lu: not an id\n", path, lineno);
      goto out;
    }
    if(rc == 1 && ids_push(&ids, &n, &cap, id)) {
      fprintf(stderr, "hearty-loadgen: %s: too many ids (cap %ld) or no memory\n", path,
              MAX_IDS);
      goto out;
    }
  }
  if(n == 0) {
    fprintf(stderr, "hearty-loadgen: %s holds no ids\n", path);
    goto out;
  }
  result = 0;
out:
  fclose(f);
  if(result)
    free(ids);
  else {
    *out = ids;
    *out_n = n;
  }
  return result;
}

/*
 * Finds "orderId":<integer> in a NUL-terminated JSON text.  Returns the id, or
 * 0 when there is none.  Not a JSON parser: enough for the service's answer,
 * whose top-level object carries orderId before any nested object.
 */
static long long find_order_id(const char *text)
{
  const char *p = strstr(text, "\"orderId\"");
  char *end = NULL;
  long long v;

  if(!p)
    return 0;
  p += strlen("\"orderId\"");
  while(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  if(*p != ':')
    return 0;
  p++;
  errno = 0;
  v = strtoll(p, &end, 10);
  if(errno || end == p || v < 1 || v > MAX_ID)
    return 0;
  return v;
}

/* ---- requests ------------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
  struct client *c = userp;
  size_t n = size * nmemb;
  size_t room = RESP_CAP - c->resp_len;
  size_t keep = n < room ? n : room;

  memcpy(c->resp + c->resp_len, data, keep);
  c->resp_len += keep;
  c->resp[c->resp_len] = '\0';
  c->resp_dropped += n - keep;
  return n;
}

/* Notes a Retry-After header (any case) among the answer's header lines. */
static size_t on_header(char *data, size_t size, size_t nitems, void *userp)
{
  struct client *c = userp;
  size_t n = size * nitems;
  static const char name[] = "retry-after:";
  size_t i;

  if(n >= sizeof(name) - 1) {
    for(i = 0; i < sizeof(name) - 1; i++) {
      char ch = data[i];
      if(ch >= 'A' && ch <= 'Z')
        ch = (char)(ch - 'A' + 'a');
      if(ch != name[i])
        break;
    }
    if(i == sizeof(name) - 1)
      c->retry_after = 1;
  }
  return n;
}

/* Sets what never changes between requests of one client.  0 or -1. */
static int client_setup(struct run *r, struct client *c)
{
  CURLcode rc = CURLE_OK;
  CURL *e = curl_easy_init();

  if(!e)
    return -1;
  c->easy = e;
  rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)c);
  rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)c);
  rc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  rc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)c);
  rc |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  rc |= curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->opt->timeout_ms);
  rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, r->opt->timeout_ms);
  rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
  rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  rc |= curl_easy_setopt(e, CURLOPT_URL, c->url);
  if(r->opt->mode == MODE_ORDER) {
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
  }
  else if(r->opt->mode == MODE_CANCEL) {
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
  }
  else {
    rc |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  }
  return rc == CURLE_OK ? 0 : -1;
}

static long pick_customer(struct run *r)
{
  return (long)(rng_next(&r->rng) % (uint64_t)r->opt->customers) + 1;
}

/*
 * Builds request number seq of the run into c (URL, body, route).  Returns 0,
 * or -1 when it does not fit its buffer (cannot happen with the bounds on
 * --url, but checked).
 */
static int client_build(struct run *r, struct client *c, long seq)
{
  const char *base = r->opt->base;
  int n = 0, m = 0;

  c->id = 0;
  if(r->opt->mode == MODE_ORDER) {
    long qty = (long)(rng_next(&r->rng) % 3) + 1;
    c->route = ROUTE_POST_ORDER;
    n = snprintf(c->url, sizeof(c->url), "%s/orders", base);
    m = snprintf(c->body, sizeof(c->body),
                 "{\"customerId\":\"bench-%ld\",\"item\":\"toast-set\",\"qty\":%ld,"
                 "\"price\":4500}",
                 pick_customer(r), qty);
    if(m < 0 || (size_t)m >= sizeof(c->body))
      return -1;
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)m);
  }
  else if(r->opt->mode == MODE_CANCEL) {
    c->route = ROUTE_CANCEL;
    c->id = r->ids[(size_t)seq % r->ids_n];
    n = snprintf(c->url, sizeof(c->url), "%s/orders/%lld/cancel", base, c->id);
  }
  else if(r->ids_n > 0 && seq % 2 == 0) {
    c->route = ROUTE_GET_ORDER;
    c->id = r->ids[(size_t)(seq / 2) % r->ids_n];
    n = snprintf(c->url, sizeof(c->url), "%s/orders/%lld", base, c->id);
  }
  else {
    c->route = ROUTE_GET_VIEW;
    n = snprintf(c->url, sizeof(c->url), "%s/mileageViews/customers/bench-%ld", base,
                 pick_customer(r));
  }
  if(n < 0 || (size_t)n >= sizeof(c->url))
    return -1;
  return 0;
}

/* Issues the run's next request on c.  0, or -1 when it could not be added. */
static int client_start(struct run *r, struct client *c)
{
  if(client_build(r, c, r->issued))
    return -1;
  c->resp_len = 0;
  c->resp[0] = '\0';
  c->resp_dropped = 0;
  c->retry_after = 0;
  c->started = now_ts();
  /* CURLOPT_URL copies the string, so set it again for each request. */
  if(curl_easy_setopt(c->easy, CURLOPT_URL, c->url) != CURLE_OK)
    return -1;
  if(curl_multi_add_handle(r->multi, c->easy) != CURLM_OK)
    return -1;
  r->issued++;
  r->inflight++;
  return 0;
}

/* Keeps the first answer body seen for each non-2xx status, bounded. */
static void keep_sample(struct stats *st, long status, const char *text)
{
  size_t i, n;

  if(status >= 200 && status < 300)
    return;
  for(i = 0; i < st->samples_n; i++)
    if(st->samples[i].status == status)
      return;
  if(st->samples_n >= SAMPLES_MAX)
    return;
  n = strlen(text);
  if(n > SAMPLE_CAP)
    n = SAMPLE_CAP;
  st->samples[st->samples_n].status = status;
  memcpy(st->samples[st->samples_n].text, text, n);
  st->samples[st->samples_n].text[n] = '\0';
  st->samples_n++;
}

/*
 * Counts the error code of an answer in the JSON error shape
 * {"error":{"code":"<snake_case>",...}}: the first "code" member after
 * "error".  Not a JSON parser: enough for the services' answers.
 */
static void count_code(struct stats *st, const char *text)
{
  const char *p = strstr(text, "\"error\"");
  char code[CODE_CAP + 1];
  size_t n = 0, i;

  if(!p || !(p = strstr(p, "\"code\"")))
    return;
  p += strlen("\"code\"");
  while(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  if(*p++ != ':')
    return;
  while(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  if(*p++ != '"')
    return;
  while(p[n] && p[n] != '"' && p[n] != '\\' && n < CODE_CAP)
    n++;
  if(p[n] != '"' || n == 0)
    return;
  memcpy(code, p, n);
  code[n] = '\0';
  for(i = 0; i < st->codes_n; i++) {
    if(strcmp(st->codes[i].code, code) == 0) {
      st->codes[i].n++;
      return;
    }
  }
  if(st->codes_n >= CODES_MAX) {
    st->codes_other++;
    return;
  }
  memcpy(st->codes[st->codes_n].code, code, n + 1);
  st->codes[st->codes_n].n = 1;
  st->codes_n++;
}

static void record_ids(struct run *r, struct client *c, long status)
{
  long long id;

  if(r->ok_out && c->route == ROUTE_CANCEL && status >= 200 && status < 300) {
    fprintf(r->ok_out, "%lld\n", c->id);
    r->st.ids_ok_written++;
  }
  if(r->opt->mode != MODE_ORDER || status != 201 || !r->ids_out)
    return;
  id = find_order_id(c->resp);
  if(id <= 0) {
    r->st.ids_unparsed++;
    return;
  }
  fprintf(r->ids_out, "%lld\n", id);
  r->st.ids_written++;
}

/* Accounts for one finished transfer of c whose outcome is result. */
static void client_finish(struct run *r, struct client *c, CURLcode result)
{
  struct stats *st = &r->st;
  struct timespec t = now_ts();
  double us = elapsed_s(&c->started, &t) * 1e6;
  long status = 0, conns = 0;
  uint32_t lat = us >= 4e9 ? UINT32_MAX : (uint32_t)us;
  size_t slot = st->latency_n;

  if(slot < st->latency_cap) {
    st->latency_us[slot] = lat;
    st->keyed_us[slot] = (uint64_t)lat; /* status 0 (transport error) until known */
    st->latency_n++;
  }
  curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &conns);
  st->new_connections += (uint64_t)(conns > 0 ? conns : 0);
  st->bytes_dropped += c->resp_dropped;
  if(result != CURLE_OK) {
    st->transport_errors++;
    st->routes[c->route].status[0]++;
    if((int)result >= 0 && (int)result < ERR_CAP)
      st->errors[result]++;
    else
      st->errors_other++;
    return;
  }
  curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
  if(status > 0 && status < STATUS_CAP) {
    st->routes[c->route].status[status]++;
    if(c->retry_after)
      st->retry_after[status]++;
    if(slot < st->latency_cap)
      st->keyed_us[slot] = ((uint64_t)status << 32) | lat;
  }
  else
    st->routes[c->route].status_other++;
  keep_sample(st, status, c->resp);
  if(status < 200 || status >= 300)
    count_code(st, c->resp);
  record_ids(r, c, status);
}

/* ---- the loop ------------------------------------------------------------ */

static int may_issue(const struct run *r, const struct timespec *t0)
{
  struct timespec t;

  if(stop_requested || r->issued >= r->opt->requests)
    return 0;
  t = now_ts();
  return elapsed_s(t0, &t) < (double)r->opt->duration_max;
}

/* Starts c's next request now, or pauses it for 0..--delay-ms first. */
static void client_next(struct run *r, struct client *c, const struct timespec *t0)
{
  if(r->opt->delay_ms > 0) {
    long ms = (long)(rng_next(&r->rng) % (uint64_t)(r->opt->delay_ms + 1));
    struct timespec t = now_ts();
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if(t.tv_nsec >= 1000000000L) {
      t.tv_sec++;
      t.tv_nsec -= 1000000000L;
    }
    c->wake = t;
    c->waiting = 1;
    r->waiting++;
    return;
  }
  if(may_issue(r, t0) && client_start(r, c))
    fprintf(stderr, "hearty-loadgen: could not issue a request\n");
}

/*
 * Issues the requests of the paused clients whose pause is over.  Returns
 * the milliseconds until the next one is due (at most 100).
 */
static long wake_clients(struct run *r, const struct timespec *t0)
{
  struct timespec t = now_ts();
  long i, next = 100;

  for(i = 0; i < r->opt->concurrency && r->waiting > 0; i++) {
    struct client *c = &r->clients[i];
    double left;
    if(!c->waiting)
      continue;
    left = elapsed_s(&t, &c->wake);
    if(left <= 0) {
      c->waiting = 0;
      r->waiting--;
      if(may_issue(r, t0) && client_start(r, c))
        fprintf(stderr, "hearty-loadgen: could not issue a request\n");
    }
    else if(left * 1000.0 < (double)next)
      next = (long)(left * 1000.0);
  }
  return next;
}

/* Handles every finished transfer libcurl reports, restarting its client. */
static void drain_done(struct run *r, const struct timespec *t0)
{
  int queued = 0;
  CURLMsg *msg = curl_multi_info_read(r->multi, &queued);

  while(msg) {
    if(msg->msg == CURLMSG_DONE) {
      char *priv = NULL;
      CURLcode result = msg->data.result;
      CURL *e = msg->easy_handle;
      struct client *c;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
      c = (struct client *)(void *)priv;
      client_finish(r, c, result);
      curl_multi_remove_handle(r->multi, e);
      r->inflight--;
      if(may_issue(r, t0))
        client_next(r, c, t0);
    }
    msg = curl_multi_info_read(r->multi, &queued);
  }
}

/*
 * Runs the load until every issued request has finished, or a hard deadline
 * (--duration-max + the per-request timeout + 5 s) passes.  Returns the
 * seconds from the first request to the last answer, and leaves in
 * *abandoned the transfers still open at the hard deadline.
 */
static double run_load(struct run *r, long *abandoned)
{
  struct timespec t0 = now_ts(), t;
  double hard = (double)r->opt->duration_max + (double)r->opt->timeout_ms / 1000.0 + 5.0;
  long i;

  for(i = 0; i < r->opt->concurrency && may_issue(r, &t0); i++)
    client_next(r, &r->clients[i], &t0);
  t = now_ts();
  while((r->inflight > 0 || r->waiting > 0) && elapsed_s(&t0, &t) < hard) {
    int running = 0;
    long wait_ms = 100;
    if(curl_multi_perform(r->multi, &running) != CURLM_OK)
      break;
    drain_done(r, &t0);
    /* libcurl's own timers cut the poll short for requests just added. */
    if(r->waiting > 0)
      wait_ms = wake_clients(r, &t0);
    if(r->inflight > 0 || r->waiting > 0)
      curl_multi_poll(r->multi, NULL, 0, (int)(wait_ms > 0 ? wait_ms : 0), NULL);
    t = now_ts();
  }
  *abandoned = r->inflight;
  return elapsed_s(&t0, &t);
}

/* ---- report -------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0..1] of the sorted array, in ms. */
static double pct_ms(const uint32_t *v, size_t n, double q)
{
  size_t rank;

  if(n == 0)
    return 0.0;
  rank = (size_t)(q * (double)n + 0.999999);
  if(rank < 1)
    rank = 1;
  if(rank > n)
    rank = n;
  return (double)v[rank - 1] / 1000.0;
}

/* Writes s as a JSON string literal (control characters escaped). */
static void json_str(FILE *out, const char *s)
{
  fputc('"', out);
  for(; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if(ch == '"' || ch == '\\')
      fprintf(out, "\\%c", ch);
    else if(ch < 0x20)
      fprintf(out, "\\u%04x", ch);
    else
      fputc(ch, out);
  }
  fputc('"', out);
}

static void print_status_map(FILE *out, const struct route_stats *rs)
{
  const char *sep = "";
  int s;

  fputc('{', out);
  for(s = 1; s < STATUS_CAP; s++) {
    if(rs->status[s]) {
      fprintf(out, "%s\"%d\":%" PRIu64, sep, s, rs->status[s]);
      sep = ",";
    }
  }
  if(rs->status_other)
    fprintf(out, "%s\"other\":%" PRIu64, sep, rs->status_other);
  fputc('}', out);
}

static void print_errors(FILE *out, const struct stats *st)
{
  const char *sep = "";
  int i;

  fputc('{', out);
  for(i = 0; i < ERR_CAP; i++) {
    if(st->errors[i]) {
      fputs(sep, out);
      json_str(out, curl_easy_strerror((CURLcode)i));
      fprintf(out, ":%" PRIu64, st->errors[i]);
      sep = ",";
    }
  }
  if(st->errors_other)
    fprintf(out, "%s\"other\":%" PRIu64, sep, st->errors_other);
  fputc('}', out);
}

static void print_routes(FILE *out, const struct stats *st)
{
  const char *sep = "";
  int i;

  fputc('{', out);
  for(i = 0; i < ROUTE_COUNT; i++) {
    struct route_stats rs = st->routes[i];
    uint64_t total = rs.status_other;
    int s;
    for(s = 0; s < STATUS_CAP; s++)
      total += rs.status[s];
    if(!total)
      continue;
    fputs(sep, out);
    json_str(out, route_names[i]);
    fprintf(out, ":{\"requests\":%" PRIu64 ",\"transport_errors\":%" PRIu64 ",\"status\":",
            total, rs.status[0]);
    print_status_map(out, &rs);
    fputc('}', out);
    sep = ",";
  }
  fputc('}', out);
}

static void print_samples(FILE *out, const struct stats *st)
{
  size_t i;

  fputc('{', out);
  for(i = 0; i < st->samples_n; i++) {
    fprintf(out, "%s\"%ld\":", i ? "," : "", st->samples[i].status);
    json_str(out, st->samples[i].text);
  }
  fputc('}', out);
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile q of n sorted keyed latencies (low 32 bits), in ms. */
static double keyed_pct_ms(const uint64_t *v, size_t n, double q)
{
  size_t rank;

  if(n == 0)
    return 0.0;
  rank = (size_t)(q * (double)n + 0.999999);
  if(rank < 1)
    rank = 1;
  if(rank > n)
    rank = n;
  return (double)(uint32_t)v[rank - 1] / 1000.0;
}

/* Upper bounds (ms) of the cumulative latency counts per status. */
static const unsigned le_bounds_ms[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000 };

/*
 * Prints {"<status>":{"count","p50","p90","p99","max","le":{"<ms>":n,...}},...}
 * from the keyed latencies, sorted (so each status is one run, fastest
 * first); "le" counts the answers that took at most that many milliseconds.
 * Status "0" is a transport error (no HTTP answer).
 */
static void print_latency_by_status(FILE *out, const struct stats *st)
{
  const uint64_t *v = st->keyed_us;
  size_t i = 0, n = st->latency_n;
  const char *sep = "";

  fputc('{', out);
  while(i < n) {
    uint32_t status = (uint32_t)(v[i] >> 32);
    size_t j = i;
    while(j < n && (uint32_t)(v[j] >> 32) == status)
      j++;
    size_t m = i, b;
    fprintf(out, "%s\"%u\":{\"count\":%zu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
            "\"max\":%.3f,\"le\":{",
            sep, status, j - i, keyed_pct_ms(v + i, j - i, 0.50), keyed_pct_ms(v + i, j - i, 0.90),
            keyed_pct_ms(v + i, j - i, 0.99), (double)(uint32_t)v[j - 1] / 1000.0);
    for(b = 0; b < sizeof(le_bounds_ms) / sizeof(le_bounds_ms[0]); b++) {
      uint64_t bound_us = (uint64_t)le_bounds_ms[b] * 1000u;
      while(m < j && (uint64_t)(uint32_t)v[m] <= bound_us)
        m++;
      fprintf(out, "%s\"%u\":%zu", b ? "," : "", le_bounds_ms[b], m - i);
    }
    fputs("}}", out);
    sep = ",";
    i = j;
  }
  fputc('}', out);
}

static void print_retry_after(FILE *out, const struct stats *st)
{
  const char *sep = "";
  int s;

  fputc('{', out);
  for(s = 1; s < STATUS_CAP; s++) {
    if(st->retry_after[s]) {
      fprintf(out, "%s\"%d\":%" PRIu64, sep, s, st->retry_after[s]);
      sep = ",";
    }
  }
  fputc('}', out);
}

static void print_codes(FILE *out, const struct stats *st)
{
  size_t i;

  fputc('{', out);
  for(i = 0; i < st->codes_n; i++) {
    fputs(i ? "," : "", out);
    json_str(out, st->codes[i].code);
    fprintf(out, ":%" PRIu64, st->codes[i].n);
  }
  if(st->codes_other)
    fprintf(out, "%s\"other\":%" PRIu64, st->codes_n ? "," : "", st->codes_other);
  fputc('}', out);
}

static const char *mode_name(enum mode m)
{
  return m == MODE_ORDER ? "order" : m == MODE_CANCEL ? "cancel" : "read";
}

static void print_report(const struct run *r, double seconds, long abandoned)
{
  const struct stats *st = &r->st;
  struct route_stats all;
  size_t n = st->latency_n;
  double sum = 0.0;
  size_t i;
  int k, s;

  memset(&all, 0, sizeof(all));
  for(k = 0; k < ROUTE_COUNT; k++) {
    for(s = 0; s < STATUS_CAP; s++)
      all.status[s] += st->routes[k].status[s];
    all.status_other += st->routes[k].status_other;
  }
  for(i = 0; i < n; i++)
    sum += st->latency_us[i];
  printf("{\"mode\":\"%s\",\"url\":", mode_name(r->opt->mode));
  json_str(stdout, r->opt->base);
  printf(",\"concurrency\":%ld,\"issued\":%ld,\"requests\":%zu,\"abandoned\":%ld,"
         "\"seconds\":%.3f,\"rate\":%.1f,",
         r->opt->concurrency, r->issued, n, abandoned, seconds,
         seconds > 0 ? (double)n / seconds : 0.0);
  printf("\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"mean\":%.3f},",
         pct_ms(st->latency_us, n, 0.50), pct_ms(st->latency_us, n, 0.90),
         pct_ms(st->latency_us, n, 0.99), n ? (double)st->latency_us[n - 1] / 1000.0 : 0.0,
         n ? sum / (double)n / 1000.0 : 0.0);
  printf("\"status\":");
  print_status_map(stdout, &all);
  printf(",\"transport_errors\":%" PRIu64 ",\"errors\":", st->transport_errors);
  print_errors(stdout, st);
  printf(",\"routes\":");
  print_routes(stdout, st);
  printf(",\"new_connections\":%" PRIu64 ",\"ids_written\":%" PRIu64
         ",\"ids_unparsed\":%" PRIu64 ",\"bytes_dropped\":%" PRIu64 ",\"samples\":",
         st->new_connections, st->ids_written, st->ids_unparsed, st->bytes_dropped);
  print_samples(stdout, st);
  printf(",\"latency_by_status_ms\":");
  print_latency_by_status(stdout, st);
  printf(",\"retry_after\":");
  print_retry_after(stdout, st);
  printf(",\"error_codes\":");
  print_codes(stdout, st);
  printf(",\"ids_ok_written\":%" PRIu64 "}\n", st->ids_ok_written);
}

/* Writes every answer's status and latency, in completion order.  0 or -1. */
static int write_latencies(const char *path, const struct stats *st)
{
  FILE *f = fopen(path, "w");
  size_t i;
  int bad;

  if(!f) {
    fprintf(stderr, "hearty-loadgen: cannot write %s: %s\n", path, strerror(errno));
    return -1;
  }
  for(i = 0; i < st->latency_n; i++)
    fprintf(f, "%u %u\n", (unsigned)(st->keyed_us[i] >> 32), (unsigned)(uint32_t)st->keyed_us[i]);
  bad = ferror(f);
  if(fclose(f) != 0 || bad) {
    fprintf(stderr, "hearty-loadgen: writing %s failed\n", path);
    return -1;
  }
  return 0;
}

/* ---- set-up and tear-down ------------------------------------------------ */

static struct curl_slist *make_headers(enum mode m)
{
  struct curl_slist *h = NULL, *t;

  /* No "Expect: 100-continue" round trip; no form Content-Type on a cancel. */
  t = curl_slist_append(h, "Expect:");
  if(!t)
    return NULL;
  h = t;
  t = curl_slist_append(h, m == MODE_ORDER ? "Content-Type: application/json"
                                           : "Content-Type:");
  if(!t) {
    curl_slist_free_all(h);
    return NULL;
  }
  h = t;
  t = curl_slist_append(h, "Accept: application/json");
  if(!t) {
    curl_slist_free_all(h);
    return NULL;
  }
  return t;
}

/* Sets up r for opt.  Returns 0, or -1 after a message (r partly set up). */
static int run_init(struct run *r, const struct options *opt, long long *ids, size_t ids_n)
{
  long i;

  memset(r, 0, sizeof(*r));
  r->opt = opt;
  r->ids = ids;
  r->ids_n = ids_n;
  r->rng = opt->seed;
  r->st.latency_cap = (size_t)opt->requests;
  r->st.latency_us = calloc(r->st.latency_cap, sizeof(uint32_t));
  r->st.keyed_us = calloc(r->st.latency_cap, sizeof(uint64_t));
  r->clients = calloc((size_t)opt->concurrency, sizeof(struct client));
  r->headers = make_headers(opt->mode);
  r->multi = curl_multi_init();
  if(!r->st.latency_us || !r->st.keyed_us || !r->clients || !r->headers || !r->multi) {
    fprintf(stderr, "hearty-loadgen: out of memory or libcurl set-up failed\n");
    return -1;
  }
  /* HTTP/1.1 only, at most one connection per client, all kept for reuse. */
  curl_multi_setopt(r->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
  curl_multi_setopt(r->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, opt->concurrency);
  curl_multi_setopt(r->multi, CURLMOPT_MAXCONNECTS, opt->concurrency);
  for(i = 0; i < opt->concurrency; i++) {
    if(client_setup(r, &r->clients[i])) {
      fprintf(stderr, "hearty-loadgen: libcurl easy handle set-up failed\n");
      return -1;
    }
  }
  return 0;
}

static void run_release(struct run *r)
{
  long i;

  if(r->clients) {
    for(i = 0; i < r->opt->concurrency; i++) {
      if(r->clients[i].easy) {
        if(r->multi)
          curl_multi_remove_handle(r->multi, r->clients[i].easy);
        curl_easy_cleanup(r->clients[i].easy);
      }
    }
  }
  if(r->multi)
    curl_multi_cleanup(r->multi);
  curl_slist_free_all(r->headers);
  free(r->clients);
  free(r->st.latency_us);
  free(r->st.keyed_us);
}

static void install_signals(void)
{
  struct sigaction sa;

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* Opens the ids for reading (cancel, read) or writing (order), and the
 * --ok-file for writing.  0 or -1. */
static int open_ids(const struct options *opt, long long **ids, size_t *ids_n, FILE **out,
                    FILE **ok_out)
{
  if(opt->ok_file) {
    *ok_out = fopen(opt->ok_file, "w");
    if(!*ok_out) {
      fprintf(stderr, "hearty-loadgen: cannot write %s: %s\n", opt->ok_file, strerror(errno));
      return -1;
    }
  }
  if(!opt->orders_file)
    return 0;
  if(opt->mode != MODE_ORDER)
    return load_ids(opt->orders_file, ids, ids_n);
  *out = fopen(opt->orders_file, "w");
  if(!*out) {
    fprintf(stderr, "hearty-loadgen: cannot write %s: %s\n", opt->orders_file,
            strerror(errno));
    return -1;
  }
  return 0;
}

int main(int argc, char **argv)
{
  struct options opt;
  struct run r;
  long long *ids = NULL;
  size_t ids_n = 0;
  FILE *ids_out = NULL, *ok_out = NULL;
  long abandoned = 0;
  double seconds;
  int result = 1;
  int rc = parse_args(argc, argv, &opt);

  if(rc)
    return rc > 0 ? 0 : 2;
  if(curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "hearty-loadgen: curl_global_init failed\n");
    return 1;
  }
  memset(&r, 0, sizeof(r));
  if(open_ids(&opt, &ids, &ids_n, &ids_out, &ok_out))
    goto out;
  if(run_init(&r, &opt, ids, ids_n))
    goto out;
  r.ids_out = ids_out;
  r.ok_out = ok_out;
  install_signals();
  seconds = run_load(&r, &abandoned);
  if(opt.latency_file && write_latencies(opt.latency_file, &r.st))
    goto out;
  qsort(r.st.latency_us, r.st.latency_n, sizeof(uint32_t), cmp_u32);
  qsort(r.st.keyed_us, r.st.latency_n, sizeof(uint64_t), cmp_u64);
  print_report(&r, seconds, abandoned);
  result = 0;
out:
  if(ids_out && fclose(ids_out) != 0 && result == 0) {
    fprintf(stderr, "hearty-loadgen: writing %s failed\n", opt.orders_file);
    result = 1;
  }
  if(ok_out && fclose(ok_out) != 0 && result == 0) {
    fprintf(stderr, "hearty-loadgen: writing %s failed\n", opt.ok_file);
    result = 1;
  }
  run_release(&r);
  free(ids);
  curl_global_cleanup();
  return result;
}
