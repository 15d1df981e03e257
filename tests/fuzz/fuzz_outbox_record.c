/*
 * fuzz_outbox_record.c - an outbox event as the command sink writes it
 * (uow__sink_json_event, src/sinks/command.c): one JSON object per line, from
 * an event whose text members and payload hold arbitrary bytes, as rows of
 * uow_outbox written by any program can.
 *
 * The line is read back by a strict JSON reader of this file (RFC 8259, and
 * RFC 3629 UTF-8 for every byte of it), which decodes the members. Checks:
 *  - the line is one JSON object, valid UTF-8, ending in its only newline;
 *  - the members are event_id, topic, key, unit_id, seq, created_at,
 *    attempt, payload, payload_encoding, in that order;
 *  - a text member decodes to its C string when that is valid UTF-8, else to
 *    it with each byte that starts no valid sequence replaced by U+FFFD; a
 *    NULL one is null;
 *  - the payload is "utf8" exactly when its bytes are valid UTF-8 and then
 *    decodes to them (NULs included), else "base64" (canonical, padded) and
 *    decodes to them;
 *  - the numbers are the event's.
 *
 * Input: byte 0 flags (bits 0..3: event_id, topic, key, unit_id is NULL; bit
 * 4: a NULL payload pointer when the payload is empty), bytes 1..4 the
 * lengths of those four texts, bytes 5..28 seq, created_at and attempt
 * (little-endian int64), then the four texts and the payload (the rest).
 * Missing bytes read as zero.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "sinks/sink.h"

/* ---- UTF-8, decoded independently of command.c ---- */

/* The length of the valid UTF-8 sequence at s (len > 0 bytes left), or 0. */
static size_t utf8_valid_at(const unsigned char *s, size_t len, uint32_t *cp) {
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  size_t n;
  uint32_t c;
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  } else if ((s[0] & 0xE0) == 0xC0) {
    n = 2;
    c = s[0] & 0x1F;
  } else if ((s[0] & 0xF0) == 0xE0) {
    n = 3;
    c = s[0] & 0x0F;
  } else if ((s[0] & 0xF8) == 0xF0) {
    n = 4;
    c = s[0] & 0x07;
  } else {
    return 0;
  }
  if (len < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    c = (c << 6) | (s[i] & 0x3F);
  }
  if (c < min_cp[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    return 0;
  *cp = c;
  return n;
}

static bool utf8_all_valid(const unsigned char *s, size_t len) {
  uint32_t cp;
  for (size_t i = 0, n; i < len; i += n)
    if (!(n = utf8_valid_at(s + i, len - i, &cp)))
      return false;
  return true;
}

static void put_utf8(char *out, size_t *len, uint32_t cp) {
  if (cp < 0x80) {
    out[(*len)++] = (char)cp;
  } else if (cp < 0x800) {
    out[(*len)++] = (char)(0xC0 | (cp >> 6));
    out[(*len)++] = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out[(*len)++] = (char)(0xE0 | (cp >> 12));
    out[(*len)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[(*len)++] = (char)(0x80 | (cp & 0x3F));
  } else {
    out[(*len)++] = (char)(0xF0 | (cp >> 18));
    out[(*len)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[(*len)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[(*len)++] = (char)(0x80 | (cp & 0x3F));
  }
}

/* What a text member must decode to: invalid bytes as U+FFFD, one each. */
static char *expected_text(const char *s, size_t *out_len) {
  size_t len = strlen(s), n = 0;
  char *out = malloc(3 * len + 1);
  FUZZ_CHECK(out != NULL);
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    size_t step = utf8_valid_at((const unsigned char *)s + i, len - i, &cp);
    if (step) {
      memcpy(out + n, s + i, step);
      n += step;
      i += step;
    } else {
      put_utf8(out, &n, 0xFFFD);
      i++;
    }
  }
  *out_len = n;
  return out;
}

/* ---- a strict JSON reader ---- */

typedef enum { J_STRING, J_NUMBER, J_NULL, J_OTHER } jkind;

typedef struct member {
  char *name;
  size_t name_len;
  jkind kind;
  char *value; /* decoded string, or the number's text */
  size_t len;
} member;

typedef struct reader {
  const char *p, *end;
} reader;

static int hex4(reader *r, uint32_t *out) {
  if (r->end - r->p < 4)
    return 0;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    char c = *r->p++;
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0)
      return 0;
    v = v * 16 + (uint32_t)d;
  }
  *out = v;
  return 1;
}

/* A string at r->p (the opening quote), decoded into a malloc'd buffer; NULL if invalid. */
static char *read_string(reader *r, size_t *len) {
  if (r->p >= r->end || *r->p != '"')
    return NULL;
  r->p++;
  char *out = malloc((size_t)(r->end - r->p) + 1);
  FUZZ_CHECK(out != NULL);
  size_t n = 0;
  while (r->p < r->end && *r->p != '"') {
    unsigned char c = (unsigned char)*r->p;
    if (c < 0x20)
      goto bad; /* control characters must be escaped */
    if (c != '\\') {
      uint32_t cp;
      size_t step = utf8_valid_at((const unsigned char *)r->p, (size_t)(r->end - r->p), &cp);
      if (!step)
        goto bad;
      memcpy(out + n, r->p, step);
      n += step;
      r->p += step;
      continue;
    }
    if (++r->p >= r->end)
      goto bad;
    char e = *r->p++;
    uint32_t cp;
    switch (e) {
    case '"':
    case '\\':
    case '/':
      out[n++] = e;
      break;
    case 'b':
      out[n++] = '\b';
      break;
    case 'f':
      out[n++] = '\f';
      break;
    case 'n':
      out[n++] = '\n';
      break;
    case 'r':
      out[n++] = '\r';
      break;
    case 't':
      out[n++] = '\t';
      break;
    case 'u':
      if (!hex4(r, &cp))
        goto bad;
      if (cp >= 0xD800 && cp <= 0xDBFF) { /* a pair, or not Unicode text */
        uint32_t lo;
        if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u')
          goto bad;
        r->p += 2;
        if (!hex4(r, &lo) || lo < 0xDC00 || lo > 0xDFFF)
          goto bad;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        goto bad;
      }
      put_utf8(out, &n, cp);
      break;
    default:
      goto bad;
    }
  }
  if (r->p >= r->end)
    goto bad;
  r->p++;
  out[n] = '\0';
  *len = n;
  return out;
bad:
  free(out);
  return NULL;
}

/* A number (RFC 8259 grammar) or a literal; the text is copied. */
static char *read_scalar(reader *r, jkind *kind, size_t *len) {
  const char *start = r->p;
  if (r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0) {
    r->p += 4;
    *kind = J_NULL;
  } else if (r->end - r->p >= 4 && memcmp(r->p, "true", 4) == 0) {
    r->p += 4;
    *kind = J_OTHER;
  } else if (r->end - r->p >= 5 && memcmp(r->p, "false", 5) == 0) {
    r->p += 5;
    *kind = J_OTHER;
  } else {
    *kind = J_NUMBER;
    if (r->p < r->end && *r->p == '-')
      r->p++;
    if (r->p < r->end && *r->p == '0') {
      r->p++;
    } else {
      if (r->p >= r->end || *r->p < '1' || *r->p > '9')
        return NULL;
      while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
        r->p++;
    }
    if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E'))
      return NULL; /* the encoder writes integers only */
  }
  *len = (size_t)(r->p - start);
  char *text = malloc(*len + 1);
  FUZZ_CHECK(text != NULL);
  memcpy(text, start, *len);
  text[*len] = '\0';
  return text;
}

/* The object at the start of `line`, members into `m` (at most cap); -1 if invalid. */
static int read_object(const char *line, size_t len, member *m, int cap) {
  reader r = {line, line + len};
  int count = 0;
  if (r.p >= r.end || *r.p++ != '{')
    return -1;
  if (r.p < r.end && *r.p == '}') {
    r.p++;
  } else {
    for (;;) {
      if (count == cap)
        return -1;
      member *mm = &m[count];
      memset(mm, 0, sizeof(*mm));
      if (!(mm->name = read_string(&r, &mm->name_len)))
        return -1;
      count++;
      if (r.p >= r.end || *r.p++ != ':')
        return -1;
      if (r.p < r.end && *r.p == '"') {
        mm->kind = J_STRING;
        mm->value = read_string(&r, &mm->len);
      } else {
        mm->value = read_scalar(&r, &mm->kind, &mm->len);
      }
      if (!mm->value)
        return -1;
      if (r.p < r.end && *r.p == ',') {
        r.p++;
        continue;
      }
      if (r.p < r.end && *r.p == '}') {
        r.p++;
        break;
      }
      return -1;
    }
  }
  return r.p == r.end ? count : -1;
}

/* ---- base64 ---- */

static int b64_value(char c) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const char *hit = c ? strchr(alphabet, c) : NULL;
  return hit ? (int)(hit - alphabet) : -1;
}

/* Decode canonical padded base64; false for anything else. */
static bool b64_decode(const char *s, size_t len, unsigned char *out, size_t *out_len) {
  if (len % 4)
    return false;
  size_t n = 0;
  for (size_t i = 0; i < len; i += 4) {
    bool last = i + 4 == len;
    int pad = last && s[i + 3] == '=' ? (s[i + 2] == '=' ? 2 : 1) : 0;
    int v[4];
    for (int k = 0; k < 4 - pad; k++)
      if ((v[k] = b64_value(s[i + k])) < 0)
        return false;
    if (!last && (s[i + 2] == '=' || s[i + 3] == '='))
      return false;
    uint32_t bits = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12;
    if (pad < 2)
      bits |= (uint32_t)v[2] << 6;
    if (pad < 1)
      bits |= (uint32_t)v[3];
    out[n++] = (unsigned char)(bits >> 16);
    if (pad < 2)
      out[n++] = (unsigned char)(bits >> 8);
    else if (bits & 0xFFFF)
      return false; /* not canonical */
    if (pad < 1)
      out[n++] = (unsigned char)bits;
    else if (bits & 0xFF)
      return false;
  }
  *out_len = n;
  return true;
}

/* ---- the checks ---- */

static bool member_is(const member *m, const char *name) {
  return m->name_len == strlen(name) && memcmp(m->name, name, m->name_len) == 0;
}

static void check_text(const member *m, const char *name, const char *text) {
  FUZZ_CHECK(member_is(m, name));
  if (!text) {
    FUZZ_CHECK(m->kind == J_NULL);
    return;
  }
  FUZZ_CHECK(m->kind == J_STRING);
  size_t want_len;
  char *want = expected_text(text, &want_len);
  FUZZ_CHECK(m->len == want_len && memcmp(m->value, want, want_len) == 0);
  free(want);
}

static void check_number(const member *m, const char *name, int64_t value) {
  FUZZ_CHECK(member_is(m, name));
  FUZZ_CHECK(m->kind == J_NUMBER);
  char want[32];
  snprintf(want, sizeof(want), "%lld", (long long)value);
  FUZZ_CHECK(strcmp(m->value, want) == 0);
}

static void check_payload(const member *m, const member *encoding, const uow_delivery *ev) {
  FUZZ_CHECK(member_is(m, "payload") && m->kind == J_STRING);
  FUZZ_CHECK(member_is(encoding, "payload_encoding") && encoding->kind == J_STRING);
  const unsigned char *payload = ev->payload ? ev->payload : (const unsigned char *)"";
  if (utf8_all_valid(payload, ev->payload_len)) {
    FUZZ_CHECK(strcmp(encoding->value, "utf8") == 0);
    FUZZ_CHECK(m->len == ev->payload_len && memcmp(m->value, payload, m->len) == 0);
    return;
  }
  FUZZ_CHECK(strcmp(encoding->value, "base64") == 0);
  unsigned char *decoded = malloc(m->len + 1);
  FUZZ_CHECK(decoded != NULL);
  size_t n = 0;
  FUZZ_CHECK(b64_decode(m->value, m->len, decoded, &n));
  FUZZ_CHECK(n == ev->payload_len && memcmp(decoded, payload, n) == 0);
  free(decoded);
}

static int64_t read_i64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  int64_t out;
  memcpy(&out, &v, sizeof(out));
  return out;
}

enum { HEADER = 29, MEMBERS = 9 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t header[HEADER] = {0};
  memcpy(header, data, size < HEADER ? size : HEADER);
  const uint8_t *rest = size > HEADER ? data + HEADER : data + size;
  size_t left = size > HEADER ? size - HEADER : 0;

  char *texts[4];
  for (int i = 0; i < 4; i++) {
    size_t n = header[1 + i] < left ? header[1 + i] : left;
    texts[i] = header[0] & (1u << i) ? NULL : fuzz_cstring(rest, n);
    rest += n;
    left -= n;
  }
  uow_delivery ev = {0};
  ev.event_id = texts[0];
  ev.topic = texts[1];
  ev.key = texts[2];
  ev.unit_id = texts[3];
  ev.store = "main";
  ev.seq = read_i64(header + 5);
  ev.created_at = read_i64(header + 13);
  ev.attempt = read_i64(header + 21);
  ev.payload = left || !(header[0] & 0x10) ? rest : NULL;
  ev.payload_len = left;

  uow_buf line;
  uow__buf_init(&line);
  uow__sink_json_event(&line, &ev);
  FUZZ_CHECK(uow__buf_status(&line) == 0);
  FUZZ_CHECK(line.len > 0 && line.data[line.len - 1] == '\n');
  FUZZ_CHECK(memchr(line.data, '\n', line.len) == line.data + line.len - 1);
  FUZZ_CHECK(utf8_all_valid((const unsigned char *)line.data, line.len));

  member m[MEMBERS + 1];
  int count = read_object(line.data, line.len - 1, m, MEMBERS + 1);
  FUZZ_CHECK(count == MEMBERS);
  check_text(&m[0], "event_id", ev.event_id);
  check_text(&m[1], "topic", ev.topic);
  check_text(&m[2], "key", ev.key);
  check_text(&m[3], "unit_id", ev.unit_id);
  check_number(&m[4], "seq", ev.seq);
  check_number(&m[5], "created_at", ev.created_at);
  check_number(&m[6], "attempt", ev.attempt);
  check_payload(&m[7], &m[8], &ev);

  for (int i = 0; i < count; i++) {
    free(m[i].name);
    free(m[i].value);
  }
  uow__buf_free(&line);
  for (int i = 0; i < 4; i++)
    free(texts[i]);
  return 0;
}
