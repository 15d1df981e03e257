/*
 * videos - a video aggregator. Each video's metadata lives in SQL (SQLite by
 * default, or PostgreSQL) and its embedding, a vector of floats, in Redis.
 * Redis cannot join a transaction, so the embedding is an entity mapped to a
 * Redis store: the unit turns it into an intent committed with the metadata,
 * applied to Redis right after the commit, or by the relay after a crash or
 * while Redis was away. So a video never stays ready without its embedding.
 *
 * Ingesting is a long job run as two units: the first marks the video
 * processing; after the slow work (a summary and an embedding computed from
 * the text) the second saves the metadata and the embedding together.
 * There is no model here: the embedding is a hashed bag of words, L2-normalised.
 *
 *   videos [--db PATH | --store URL] --redis URL [--top N] [demo]
 *   videos ... ingest URL TITLE TEXT
 *   videos ... search TEXT
 *   videos ... relay
 */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uow.h"

#define DIMS 64

/* ---- the model ---- */

typedef struct video {
  int64_t id;
  char *url;
  char *title;
  char *state; /* "processing" or "ready" */
  char *summary;
  int64_t version;
} video;
static const uow_column video_columns[] = {
    UOW_COLUMN(video, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(video, url, UOW_TEXT, UOW_UNIQUE),
    UOW_COLUMN(video, title, UOW_TEXT, 0),
    UOW_COLUMN(video, state, UOW_TEXT, 0),
    UOW_COLUMN(video, summary, UOW_TEXT, UOW_NULLABLE),
    UOW_COLUMN(video, version, UOW_INT64, UOW_VERSION),
};
static const uow_entity video_entity = UOW_ENTITY(video, "videos", video_columns);

/* In Redis: the hash video_embeddings:<video id>. */
typedef struct embedding {
  int64_t id; /* the video's id */
  int64_t dims;
  uow_blob vector; /* dims floats, in the host's byte order */
  int64_t version;
} embedding;
static const uow_column embedding_columns[] = {
    UOW_COLUMN(embedding, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(embedding, dims, UOW_INT64, 0),
    UOW_COLUMN(embedding, vector, UOW_BLOB, 0),
    UOW_COLUMN(embedding, version, UOW_INT64, UOW_VERSION),
};
static const uow_entity embedding_entity =
    UOW_ENTITY(embedding, "video_embeddings", embedding_columns);

/* Answers that are business outcomes, not library failures. */
enum { EMBEDDING_PENDING = 1 };

/* ---- the repository: small functions over the unit ---- */

/* `*out` is NULL when no video has that URL. */
static int video_find_by_url(uow_unit *unit, const char *url, video **out) {
  uow_value by_url[] = {uow_text(url)};
  void **rows;
  size_t n;
  int rc = uow_find(unit, &video_entity, "url = ?", by_url, 1, &rows, &n);
  *out = rc == UOW_OK && n > 0 ? rows[0] : NULL;
  return rc;
}

static int video_create(uow_unit *unit, const char *url, video **out) {
  int rc = uow_new(unit, &video_entity, (void **)out);
  if (rc == UOW_OK && !((*out)->url = uow_strdup(unit, url)))
    rc = UOW_ENOMEM;
  return rc;
}

static int videos_ready(uow_unit *unit, void ***rows, size_t *n) {
  uow_value ready[] = {uow_text("ready")};
  return uow_find(unit, &video_entity, "state = ? ORDER BY id", ready, 1, rows, n);
}

/* A first embedding is only written, so Redis may be away; replacing one
 * reads it first, for its version. EMBEDDING_PENDING: an earlier one is still
 * in the outbox, and writing over it blindly could lose to it. */
static int embedding_for(uow_unit *unit, int64_t video_id, bool first, embedding **out) {
  if (first) {
    int rc = uow_new(unit, &embedding_entity, (void **)out);
    if (rc == UOW_OK)
      (*out)->id = video_id;
    return rc;
  }
  int rc = uow_get(unit, &embedding_entity, &video_id, (void **)out);
  return rc == UOW_ENOTFOUND ? EMBEDDING_PENDING : rc;
}

static int embedding_set(uow_unit *unit, embedding *e, const float *vector, size_t dims) {
  e->dims = (int64_t)dims;
  e->vector = uow_blobdup(unit, vector, dims * sizeof(float));
  return e->vector.data ? UOW_OK : UOW_ENOMEM;
}

/* ---- the slow work: a summary and an embedding ---- */

/* The first sentence, at most 200 bytes. */
static void summarize(const char *text, char *out, size_t cap) {
  size_t n = 0;
  while (text[n] && n + 1 < cap && n < 200) {
    n++;
    if (strchr(".!?", text[n - 1]) && (text[n] == '\0' || isspace((unsigned char)text[n])))
      break;
  }
  memcpy(out, text, n);
  out[n] = '\0';
}

static bool is_stop_word(const char *w) {
  static const char *stop[] = {"a",  "an", "and", "the",  "of",  "to",   "in", "on",
                               "is", "it", "for", "with", "how", "your", "you"};
  for (size_t i = 0; i < sizeof(stop) / sizeof(stop[0]); i++)
    if (strcmp(w, stop[i]) == 0)
      return true;
  return false;
}

/* Each word (lowercase letters and digits) adds +1 or -1 to one of DIMS
 * dimensions, both chosen by its FNV-1a hash. */
static void add_words(const char *text, float *vector) {
  for (const char *p = text; *p;) {
    char word[64];
    size_t n = 0;
    for (; *p && !isalnum((unsigned char)*p); p++)
      ;
    for (; isalnum((unsigned char)*p); p++)
      if (n + 1 < sizeof(word))
        word[n++] = (char)tolower((unsigned char)*p);
    word[n] = '\0';
    if (n == 0 || is_stop_word(word))
      continue;
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++)
      h = (h ^ (unsigned char)word[i]) * 1099511628211u;
    vector[h % DIMS] += (h >> 32) & 1 ? 1.0f : -1.0f;
  }
}

/* The words of the title and the text, L2-normalised. */
static void embed(const char *title, const char *text, float *vector) {
  memset(vector, 0, DIMS * sizeof(float));
  add_words(title, vector);
  add_words(text, vector);
  double norm = 0;
  for (size_t i = 0; i < DIMS; i++)
    norm += (double)vector[i] * vector[i];
  for (size_t i = 0; norm > 0 && i < DIMS; i++)
    vector[i] = (float)(vector[i] / sqrt(norm));
}

static double cosine(const float *a, const float *b, size_t dims) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < dims; i++) {
    dot += (double)a[i] * b[i];
    na += (double)a[i] * a[i];
    nb += (double)b[i] * b[i];
  }
  return na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0;
}

/* ---- the business operation: ingest, as two units ---- */

typedef struct ingest {
  const char *url, *title;
  char summary[256];
  float vector[DIMS];
  int64_t id;                /* out of the first unit */
  bool first;                /* the first unit created the video */
  int64_t embedding_version; /* out of the second unit: the one it commits */
} ingest;

/* Unit 1: the video is processing (created, or taken back from ready). A
 * video has had an embedding since its first summary: both are saved by
 * unit 2. Replacing it needs Redis to hold it, for its version. */
static int mark_processing(uow_unit *unit, void *arg) {
  ingest *job = arg;
  video *v;
  embedding *e;
  int rc = video_find_by_url(unit, job->url, &v);
  if (rc)
    return rc;
  job->first = !v || !v->summary;
  if (!v)
    rc = video_create(unit, job->url, &v);
  else if (!job->first)
    rc = embedding_for(unit, v->id, false, &e); /* pending: refused before any change */
  if (rc)
    return rc;
  v->title = uow_strdup(unit, job->title);
  v->state = "processing";
  if (!v->title)
    return UOW_ENOMEM;
  rc = uow_flush(unit); /* a new video gets its id */
  job->id = v->id;
  return rc;
}

/* Unit 2: the metadata and the embedding, together. */
static int save_results(uow_unit *unit, void *arg) {
  ingest *job = arg;
  video *v;
  embedding *e;
  int rc = uow_get(unit, &video_entity, &job->id, (void **)&v);
  if (rc == UOW_OK)
    rc = embedding_for(unit, v->id, job->first, &e);
  if (rc)
    return rc;
  /* An unchanged embedding is not written (the unit sends only changes). */
  bool same = e->dims == DIMS && e->vector.size == sizeof(job->vector) &&
              memcmp(e->vector.data, job->vector, sizeof(job->vector)) == 0;
  if (!same && (rc = embedding_set(unit, e, job->vector, DIMS)))
    return rc;
  job->embedding_version = same ? e->version : e->version + 1; /* a new one's is 0 till commit */
  v->state = "ready";
  v->summary = uow_strdup(unit, job->summary);
  return v->summary ? UOW_OK : UOW_ENOMEM;
}

/* ---- the commands ---- */

/* The SQL schema is created before the Redis store is added: Redis needs
 * none, and so the program starts (and ingests) while Redis is away. */
static int open_env(const char *url, const char *redis, uow_env **env) {
  int rc = uow_env_open(NULL, env);
  if (rc == UOW_OK && (rc = uow_env_add_store(*env, "main", url)) == UOW_OK &&
      (rc = uow_env_map(*env, &video_entity, "main")) == UOW_OK &&
      (rc = uow_env_create_schema(*env)) == UOW_OK &&
      (rc = uow_env_add_store(*env, "redis", redis)) == UOW_OK)
    rc = uow_env_map(*env, &embedding_entity, "redis");
  if (rc)
    fprintf(stderr, "videos: %s\n", *env ? uow_env_errmsg(*env) : uow_strerror(rc));
  return rc;
}

/* Whether Redis holds the embedding of video `id` at `version` or newer. */
static bool embedding_in_redis(uow_env *env, int64_t id, int64_t version) {
  uow_unit *unit = NULL;
  embedding *e = NULL;
  bool there = uow_begin(env, &unit) == UOW_OK &&
               uow_get(unit, &embedding_entity, &id, (void **)&e) == UOW_OK &&
               e->version >= version;
  uow_end(unit);
  return there;
}

/* Why an ingest unit did not commit, for a person. */
static int ingest_failed(uow_env *env, const char *url, int rc) {
  if (rc == EMBEDDING_PENDING)
    printf("  %s: its last embedding is not in Redis yet; run `videos relay`, then ingest "
           "again\n",
           url);
  else
    fprintf(stderr, "videos: %s: %s\n", url, uow_env_errmsg(env));
  return 1;
}

static int cmd_ingest(uow_env *env, const char *url, const char *title, const char *text) {
  ingest job = {url, title, "", {0}, 0, false, 0};
  int rc = uow_run(env, mark_processing, &job, NULL);
  if (rc)
    return ingest_failed(env, url, rc);
  printf("  video %-3" PRId64 " processing  %s\n", job.id, title);
  summarize(text, job.summary, sizeof(job.summary)); /* the slow work */
  embed(title, text, job.vector);
  if ((rc = uow_run(env, save_results, &job, NULL)))
    return ingest_failed(env, url, rc);
  printf("  video %-3" PRId64 " ready       \"%s\"; embedding (%d dims) %s\n", job.id, job.summary,
         DIMS,
         embedding_in_redis(env, job.id, job.embedding_version)
             ? "applied to Redis"
             : "committed as an intent, not in Redis yet: run `videos relay`");
  return 0;
}

typedef struct hit {
  double score;
  const video *v;
} hit;

static int by_score(const void *a, const void *b) {
  const hit *x = a, *y = b;
  return (x->score < y->score) - (x->score > y->score);
}

/* Rank the ready videos by cosine similarity to `text`: metadata from SQL,
 * each embedding from Redis by key. `best` receives the first one's URL. */
static int cmd_search(uow_env *env, const char *text, size_t top, char *best, size_t cap) {
  float query[DIMS];
  embed("", text, query);
  uow_unit *unit = NULL;
  void **rows = NULL;
  size_t n = 0, nhits = 0, pending = 0;
  int rc = uow_begin(env, &unit);
  if (rc == UOW_OK)
    rc = videos_ready(unit, &rows, &n);
  hit *hits = rc == UOW_OK ? calloc(n ? n : 1, sizeof(*hits)) : NULL;
  if (rc == UOW_OK && !hits)
    rc = UOW_ENOMEM;
  for (size_t i = 0; rc == UOW_OK && i < n; i++) {
    video *v = rows[i];
    embedding *e;
    rc = uow_get(unit, &embedding_entity, &v->id, (void **)&e);
    if (rc == UOW_OK && e->dims == DIMS && e->vector.size == DIMS * sizeof(float)) {
      float vector[DIMS];
      memcpy(vector, e->vector.data, sizeof(vector));
      hits[nhits++] = (hit){cosine(query, vector, DIMS), v};
    } else if (rc == UOW_OK) {
      printf("  skipped  video %-3" PRId64 " %s: its embedding has %" PRId64 " dims, not %d\n",
             v->id, v->title, e->dims, DIMS);
    } else if (rc == UOW_ENOTFOUND) {
      printf("  pending  video %-3" PRId64 " %s: ready, its embedding is not in Redis yet (run "
             "`videos relay`)\n",
             v->id, v->title);
      pending++;
      rc = UOW_OK;
    }
  }
  if (rc == UOW_OK) {
    qsort(hits, nhits, sizeof(*hits), by_score);
    snprintf(best, cap, "%s", nhits ? hits[0].v->url : "");
    printf("  search \"%s\": %zu videos ranked, %zu pending\n", text, nhits, pending);
    for (size_t i = 0; i < nhits && i < top; i++)
      printf("  %zu. %.3f  video %-3" PRId64 " %s  (%s)\n       %s\n", i + 1, hits[i].score,
             hits[i].v->id, hits[i].v->title, hits[i].v->url, hits[i].v->summary);
  } else {
    fprintf(stderr, "videos: search: %s\n", unit ? uow_errmsg(unit) : uow_env_errmsg(env));
  }
  free(hits);
  uow_end(unit); /* read only: rolled back */
  return rc ? 1 : 0;
}

/* A relay needs a sink for events. This program emits none, and its database
 * is its own, so any event found has no consumer: it is printed and taken. */
static int take_events(void *ctx, const uow_delivery *events, size_t n, size_t *delivered,
                       char *err, size_t errcap) {
  (void)err;
  (void)errcap;
  for (size_t i = 0; i < n; i++)
    printf("  event  %s %s (no consumer here)\n", events[i].event_id, events[i].topic);
  *(uint64_t *)ctx += n;
  *delivered = n;
  return UOW_OK;
}

/* Relay passes until nothing is pending: each applies intents to Redis. */
static int cmd_relay(uow_env *env) {
  uint64_t events = 0;
  uow_sink sink = {UOW_SINK_VERSION, "videos", take_events, NULL, &events};
  uow_relay_stats stats = {0};
  for (int pass = 1; pass <= 50; pass++) {
    uint64_t delivered = stats.delivered, retried = stats.retried, seen = events;
    if (uow_relay_once(env, &sink, NULL, &stats)) {
      fprintf(stderr, "videos: relay: %s\n", uow_env_errmsg(env));
      return 1;
    }
    uint64_t applied = stats.delivered - delivered - (events - seen);
    if (stats.backlog < 0) {
      printf("  another relay holds the outbox lease (it lasts 30 s): try again later\n");
      return 1;
    }
    if (applied || stats.backlog == 0)
      printf("  pass %d: %" PRIu64 " embeddings applied to Redis, %" PRId64 " pending\n", pass,
             applied, stats.backlog);
    if (stats.backlog == 0)
      return 0;
    if (stats.retried > retried) {
      printf("  pass %d: Redis refused or is unreachable; %" PRId64
             " intents stay pending, run `videos relay` again\n",
             pass, stats.backlog);
      return 1;
    }
    nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL); /* rows not due yet */
  }
  printf("  %" PRId64 " intents still pending: run `videos relay` again\n", stats.backlog);
  return 1;
}

/* The scripted tour; exits non-zero when the closest video is not first. */
static int cmd_demo(uow_env *env, size_t top) {
  static const char *library[][3] = {
      {"https://videos.example/pasta", "Fresh pasta by hand",
       "Make fresh pasta dough with flour and eggs. Knead the dough, roll it thin and cut "
       "tagliatelle for dinner."},
      {"https://videos.example/bicycle", "Fixing a flat bicycle tire",
       "Fix a flat bicycle tire at the roadside. Remove the wheel, find the puncture in the "
       "inner tube, patch it and pump the tire."},
      {"https://videos.example/puppy", "Training a puppy to sit",
       "Train a puppy to sit with treats. Short daily sessions and patience make the dog "
       "learn quickly."},
      {"https://videos.example/guitar", "First guitar chords",
       "Learn your first guitar chords. Practice G, C and D chords and strum slowly until "
       "changes are smooth."},
  };
  int failed = 0;
  printf("1. Ingest: processing, then the summary and the embedding saved together\n");
  for (size_t i = 0; i < 4; i++)
    failed |= cmd_ingest(env, library[i][0], library[i][1], library[i][2]);
  printf("\n2. The relay applies whatever a crash or an outage left pending\n");
  failed |= cmd_relay(env);
  printf("\n3. Search: the closest video comes first\n");
  static const char *queries[][2] = {
      {"patch a flat bicycle tire", "https://videos.example/bicycle"},
      {"teach my dog to sit", "https://videos.example/puppy"}};
  for (size_t i = 0; i < 2; i++) {
    char best[512];
    failed |= cmd_search(env, queries[i][0], top, best, sizeof(best));
    failed |= strcmp(best, queries[i][1]) != 0;
  }
  printf("\n   %s\n", failed ? "FAILED: see above"
                             : "4 videos ready, each with its embedding, found by their text");
  return failed;
}

static void usage(FILE *to) {
  fprintf(to, "usage: videos [--db PATH | --store URL] --redis URL [--top N] [COMMAND]\n"
              "  demo                    ingest a few videos, relay, search (the default)\n"
              "  ingest URL TITLE TEXT   summarize and embed TEXT; metadata and embedding\n"
              "                          are saved in one unit\n"
              "  search TEXT             the closest ready videos, best first\n"
              "  relay                   apply pending embeddings to Redis until none is left\n"
              "  --db PATH               SQLite file (default videos.db)\n"
              "  --store URL             any SQL store URL instead, e.g. postgresql://...\n"
              "  --redis URL             redis://host:port/db or redis+unix:///path/to/socket\n"
              "  --top N                 results shown by search (default 3)\n");
}

int main(int argc, char **argv) {
  const char *db = "videos.db", *store = NULL, *redis = NULL;
  size_t top = 3;
  int i = 1;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      usage(stderr);
      return 2;
    }
    if (strcmp(argv[i], "--db") == 0)
      db = argv[++i];
    else if (strcmp(argv[i], "--store") == 0)
      store = argv[++i];
    else if (strcmp(argv[i], "--redis") == 0)
      redis = argv[++i];
    else if (strcmp(argv[i], "--top") == 0 && atoi(argv[i + 1]) > 0)
      top = (size_t)atoi(argv[++i]);
    else {
      usage(stderr);
      return 2;
    }
  }
  const char *command = i < argc ? argv[i++] : "demo";
  int nargs = argc - i;
  if (!redis || !((strcmp(command, "demo") == 0 && nargs == 0) ||
                  (strcmp(command, "ingest") == 0 && nargs == 3) ||
                  (strcmp(command, "search") == 0 && nargs == 1) ||
                  (strcmp(command, "relay") == 0 && nargs == 0))) {
    usage(stderr);
    return 2;
  }
  char url[1100];
  snprintf(url, sizeof(url), store ? "%s" : "sqlite:%s", store ? store : db);
  uow_env *env = NULL;
  int rc = open_env(url, redis, &env) ? 1 : 0;
  if (rc == 0 && strcmp(command, "demo") == 0)
    rc = cmd_demo(env, top);
  else if (rc == 0 && strcmp(command, "ingest") == 0)
    rc = cmd_ingest(env, argv[i], argv[i + 1], argv[i + 2]);
  else if (rc == 0 && strcmp(command, "search") == 0)
    rc = cmd_search(env, argv[i], top, url, sizeof(url));
  else if (rc == 0)
    rc = cmd_relay(env);
  uow_env_close(env);
  return rc;
}
