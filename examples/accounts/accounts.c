/*
 * accounts - sign-up for a hosted product. Registering is one unit of work:
 * open an account, add its admin user, queue a welcome mail and record a
 * `user.registered` event. A second registration with the same email is
 * refused and leaves nothing behind, not even the account it had opened. The
 * welcome mail is optional: it runs inside a savepoint, so an address the
 * mail provider bounces (domain bounce.example here) loses its welcome mail,
 * not its registration.
 *
 * Mail leaves through the outbox: `deliver` runs the relay once with a
 * command sink whose command appends each event, a JSON line, to a mail log.
 *
 *   accounts [--db PATH | --store URL] [--mail-log PATH] [demo]
 *   accounts [--db PATH | --store URL] register EMAIL NAME
 *   accounts [--db PATH | --store URL] [--mail-log PATH] deliver
 *   accounts [--db PATH | --store URL] list
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "uow.h"

/* ---- the model ---- */

typedef struct account {
  int64_t id;
  char *name;
  int64_t created_at;
} account;
static const uow_column account_columns[] = {
    UOW_COLUMN(account, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(account, name, UOW_TEXT, 0),
    UOW_COLUMN(account, created_at, UOW_INT64, 0),
};
static const uow_entity account_entity = UOW_ENTITY(account, "accounts", account_columns);

typedef struct user {
  int64_t id;
  int64_t account_id;
  account *account;
  char *email;
  char *name;
  char *role;
  int64_t created_at;
} user;
static const uow_column user_columns[] = {
    UOW_COLUMN(user, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_REFERENCE(user, account_id, UOW_INT64, account, account_entity, 0),
    UOW_COLUMN(user, email, UOW_TEXT, UOW_UNIQUE),
    UOW_COLUMN(user, name, UOW_TEXT, 0),
    UOW_COLUMN(user, role, UOW_TEXT, 0),
    UOW_COLUMN(user, created_at, UOW_INT64, 0),
};
static const uow_entity user_entity = UOW_ENTITY(user, "account_users", user_columns);

typedef struct welcome_mail {
  int64_t id;
  int64_t user_id;
  user *user;
  char *address;
  int64_t queued_at;
} welcome_mail;
static const uow_column welcome_mail_columns[] = {
    UOW_COLUMN(welcome_mail, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_REFERENCE(welcome_mail, user_id, UOW_INT64, user, user_entity, 0),
    UOW_COLUMN(welcome_mail, address, UOW_TEXT, 0),
    UOW_COLUMN(welcome_mail, queued_at, UOW_INT64, 0),
};
static const uow_entity welcome_mail_entity =
    UOW_ENTITY(welcome_mail, "welcome_mails", welcome_mail_columns);

/* Answers of a registration that are business outcomes, not library failures. */
enum { EMAIL_TAKEN = 1, MAIL_BOUNCED = 2 };

/* ---- the repository: small functions over the unit ---- */

static int account_create(uow_unit *unit, const char *name, account **out) {
  int rc = uow_new(unit, &account_entity, (void **)out);
  if (rc)
    return rc;
  (*out)->name = uow_strdup(unit, name);
  (*out)->created_at = (int64_t)time(NULL);
  return (*out)->name ? UOW_OK : UOW_ENOMEM;
}

static int user_create(uow_unit *unit, account *a, const char *email, const char *name,
                       const char *role, user **out) {
  int rc = uow_new(unit, &user_entity, (void **)out);
  if (rc)
    return rc;
  user *u = *out;
  u->account = a;
  u->email = uow_strdup(unit, email);
  u->name = uow_strdup(unit, name);
  u->role = uow_strdup(unit, role);
  u->created_at = (int64_t)time(NULL);
  return u->email && u->name && u->role ? UOW_OK : UOW_ENOMEM;
}

/* `*out` is NULL when nobody has that email. */
static int user_find_by_email(uow_unit *unit, const char *email, user **out) {
  uow_value by_email[] = {uow_text(email)};
  void **rows;
  size_t n;
  int rc = uow_find(unit, &user_entity, "email = ?", by_email, 1, &rows, &n);
  *out = rc == UOW_OK && n > 0 ? rows[0] : NULL;
  return rc;
}

static int welcome_mail_queue(uow_unit *unit, user *u, welcome_mail **out) {
  int rc = uow_new(unit, &welcome_mail_entity, (void **)out);
  if (rc)
    return rc;
  (*out)->user = u;
  (*out)->address = u->email;
  (*out)->queued_at = (int64_t)time(NULL);
  return UOW_OK;
}

static int count_rows(uow_unit *unit, const uow_entity *entity, size_t *n) {
  void **rows;
  return uow_find(unit, entity, NULL, NULL, 0, &rows, n);
}

/* ---- the business operation ---- */

/* The mail provider refuses addresses it has seen bounce: here, a whole domain. */
static bool mail_provider_accepts(const char *address) {
  const char *domain = strrchr(address, '@');
  return !domain || strcmp(domain + 1, "bounce.example") != 0;
}

/* Copy `s` into `out` as the inside of a JSON string. */
static void json_escape(const char *s, char *out, size_t cap) {
  size_t n = 0;
  for (; *s && n + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      n += (size_t)snprintf(out + n, cap - n, "\\%c", c);
    else if (c < 0x20)
      n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
    else
      out[n++] = (char)c;
  }
  out[n] = '\0';
}

typedef struct registration {
  const char *email;
  const char *name;
  bool welcome_queued; /* out: the optional step kept its work */
} registration;

/*
 * The optional step. Whatever goes wrong in it is undone by uow_rollback_to
 * and the registration goes on; only a failure to undo fails the unit.
 */
static int send_welcome_mail(uow_unit *unit, user *admin, bool *queued) {
  int rc = uow_savepoint(unit); /* flushes the account and its admin first */
  if (rc)
    return rc;
  welcome_mail *mail;
  rc = welcome_mail_queue(unit, admin, &mail);
  if (rc == UOW_OK)
    rc = uow_flush(unit); /* the provider wants our mail id as its reference */
  if (rc == UOW_OK && !mail_provider_accepts(mail->address))
    rc = MAIL_BOUNCED;
  *queued = rc == UOW_OK;
  return rc == UOW_OK ? uow_release(unit) : uow_rollback_to(unit);
}

static int emit_user_registered(uow_unit *unit, const user *admin, bool welcome) {
  char email[512], name[512], payload[1280];
  json_escape(admin->email, email, sizeof(email));
  json_escape(admin->name, name, sizeof(name));
  int len = snprintf(payload, sizeof(payload),
                     "{\"account_id\":%" PRId64 ",\"user_id\":%" PRId64
                     ",\"email\":\"%s\",\"name\":\"%s\",\"welcome_mail\":%s}",
                     admin->account_id, admin->id, email, name, welcome ? "true" : "false");
  return uow_emit(unit, "user.registered", admin->email, payload, (size_t)len);
}

/* One unit (run by uow_run): the account, its admin, maybe a welcome mail, the event. */
static int register_account(uow_unit *unit, void *arg) {
  registration *r = arg;
  account *a;
  user *admin;
  int rc = account_create(unit, r->name, &a);
  if (rc == UOW_OK)
    rc = user_find_by_email(unit, r->email, &admin); /* sends the account's INSERT too */
  if (rc)
    return rc;
  if (admin)
    return EMAIL_TAKEN; /* uow_run rolls back: the account just written goes too */
  if ((rc = user_create(unit, a, r->email, r->name, "admin", &admin)) ||
      (rc = send_welcome_mail(unit, admin, &r->welcome_queued)))
    return rc;
  return emit_user_registered(unit, admin, r->welcome_queued);
}

/* ---- the commands ---- */

static int open_env(const char *url, uow_env **env) {
  int rc = uow_env_open(NULL, env);
  if (rc == UOW_OK && (rc = uow_env_add_store(*env, "main", url)) == UOW_OK &&
      (rc = uow_env_map(*env, &account_entity, "main")) == UOW_OK &&
      (rc = uow_env_map(*env, &user_entity, "main")) == UOW_OK &&
      (rc = uow_env_map(*env, &welcome_mail_entity, "main")) == UOW_OK)
    rc = uow_env_create_schema(*env);
  if (rc)
    fprintf(stderr, "accounts: %s\n", *env ? uow_env_errmsg(*env) : uow_strerror(rc));
  return rc;
}

static int count_accounts(uow_env *env, size_t *n) {
  uow_unit *unit = NULL;
  int rc = uow_begin(env, &unit);
  if (rc == UOW_OK && (rc = count_rows(unit, &account_entity, n)))
    fprintf(stderr, "accounts: %s\n", uow_errmsg(unit));
  uow_end(unit);
  return rc;
}

static int cmd_register(uow_env *env, const char *email, const char *name) {
  if (!strchr(email, '@') || strlen(email) > 254 || strlen(name) > 200) {
    fprintf(stderr, "accounts: '%s' is not an email address\n", email);
    return 2;
  }
  registration r = {email, name, false};
  int rc = uow_run(env, register_account, &r, NULL);
  if (rc == EMAIL_TAKEN || rc == UOW_ECONSTRAINT) {
    printf("  %-22s rejected: %s is already registered; nothing was stored\n", email, email);
    if (rc == UOW_ECONSTRAINT) /* two registrations raced: the UNIQUE email decided */
      printf("  %-22s %s\n", "", uow_env_errmsg(env));
    return 1;
  }
  if (rc) {
    printf("  %-22s failed: %s\n", email, uow_env_errmsg(env));
    return 1;
  }
  printf("  %-22s registered: account and admin user%s\n", email,
         r.welcome_queued ? ", welcome mail queued"
                          : "; welcome mail bounced and undone, registration kept");
  return 0;
}

/* A sink that hands a batch to the mail command and prints what the command took. */
static int send_and_print(void *ctx, const uow_delivery *events, size_t n, size_t *delivered,
                          char *err, size_t errcap) {
  const uow_sink *mail = ctx;
  int rc = mail->deliver(mail->ctx, events, n, delivered, err, errcap);
  size_t sent = rc == UOW_OK ? n : *delivered;
  for (size_t i = 0; i < sent; i++) {
    char payload[1280];
    size_t len = events[i].payload_len < sizeof(payload) ? events[i].payload_len : 0;
    memcpy(payload, events[i].payload ? events[i].payload : "", len);
    payload[len] = '\0';
    bool welcome = strstr(payload, "\"welcome_mail\":true") != NULL;
    printf("  sent  %-8s %s to %s%s\n", events[i].event_id, events[i].topic,
           events[i].key ? events[i].key : "-", welcome ? " (with welcome mail)" : "");
  }
  if (rc)
    printf("  the mail command failed: %s\n", err);
  return rc;
}

/* Single quotes for /bin/sh: each ' becomes '\''. */
static int shell_quote(const char *s, char *out, size_t cap) {
  size_t n = 0;
  out[n++] = '\'';
  for (; *s; s++) {
    if (n + 6 >= cap)
      return -1;
    if (*s == '\'') {
      memcpy(out + n, "'\\''", 4);
      n += 4;
    } else {
      out[n++] = *s;
    }
  }
  out[n++] = '\'';
  out[n] = '\0';
  return 0;
}

static int cmd_deliver(uow_env *env, const char *mail_log, uow_relay_stats *stats) {
  char quoted[1024], command[1100];
  if (shell_quote(mail_log, quoted, sizeof(quoted))) {
    fprintf(stderr, "accounts: mail log path too long\n");
    return 2;
  }
  snprintf(command, sizeof(command), "cat >> %s", quoted);
  uow_sink mail;
  int rc = uow_sink_command(command, &mail);
  if (rc) {
    fprintf(stderr, "accounts: mail command: %s\n", uow_strerror(rc));
    return 1;
  }
  uow_sink printing = {UOW_SINK_VERSION, "mail", send_and_print, NULL, &mail};
  memset(stats, 0, sizeof(*stats));
  rc = uow_relay_once(env, &printing, NULL, stats);
  uow_sink_close(&mail);
  if (rc) {
    fprintf(stderr, "accounts: deliver: %s\n", uow_env_errmsg(env));
    return 1;
  }
  if (stats->backlog < 0) /* SQLite: the store was skipped, another relay's lease is live */
    printf("  another relay holds the outbox lease (it lasts 30 s): nothing sent, try again\n");
  else
    printf("  %" PRIu64 " sent to `%s`, %" PRIu64 " to retry, %" PRId64 " still pending\n",
           stats->delivered, command, stats->retried, stats->backlog);
  return 0;
}

static int cmd_list(uow_env *env) {
  uow_unit *unit = NULL;
  void **rows;
  size_t n = 0, accounts = 0, mails = 0;
  int rc = uow_begin(env, &unit);
  if (rc == UOW_OK)
    rc = uow_find(unit, &user_entity, "id > 0 ORDER BY id", NULL, 0, &rows, &n);
  for (size_t i = 0; rc == UOW_OK && i < n; i++) {
    user *u = rows[i];
    account *a;
    uow_value by_user[] = {uow_int64(u->id)};
    void **found;
    size_t welcome = 0;
    if ((rc = uow_get(unit, &account_entity, &u->account_id, (void **)&a)) == UOW_OK &&
        (rc = uow_find(unit, &welcome_mail_entity, "user_id = ?", by_user, 1, &found, &welcome)) ==
            UOW_OK)
      printf("  account %-3" PRId64 " %-20s %s %-22s welcome mail: %s\n", a->id, a->name, u->role,
             u->email, welcome ? "queued" : "none");
  }
  if (rc == UOW_OK && (rc = count_rows(unit, &account_entity, &accounts)) == UOW_OK)
    rc = count_rows(unit, &welcome_mail_entity, &mails);
  if (rc == UOW_OK)
    printf("  %zu accounts, %zu users, %zu welcome mails\n", accounts, n, mails);
  else
    fprintf(stderr, "accounts: %s\n", uow_errmsg(unit));
  uow_end(unit);
  return rc ? 1 : 0;
}

/* The scripted tour; exits non-zero when a figure does not add up. */
static int cmd_demo(uow_env *env, const char *mail_log) {
  size_t before, after;
  int failed = 0;
  printf("1. Registration: an account and its admin user in one unit, with an event\n");
  failed |= cmd_register(env, "ada@example.com", "Ada Lovelace") != 0;
  failed |= cmd_register(env, "grace@example.com", "Grace Hopper") != 0;

  printf("\n2. A duplicate email is refused, and the account it opened goes with it\n");
  if (count_accounts(env, &before))
    return 1;
  failed |= cmd_register(env, "ada@example.com", "Ada Impostor") != 1;
  if (count_accounts(env, &after))
    return 1;
  printf("  accounts before: %zu, after: %zu%s\n", before, after,
         before == after ? " (no orphaned account)" : " (ORPHANED ACCOUNT)");
  failed |= before != after;

  printf("\n3. The welcome mail is optional: a bounce undoes it, not the registration\n");
  failed |= cmd_register(env, "bob@bounce.example", "Bob Bounced") != 0;

  printf("\n4. What is stored\n");
  failed |= cmd_list(env) != 0;

  printf("\n5. The relay hands the events to the mail command (appends to %s)\n", mail_log);
  uow_relay_stats stats;
  failed |= cmd_deliver(env, mail_log, &stats) != 0;
  failed |= stats.delivered != 3 || stats.backlog != 0;

  FILE *log = fopen(mail_log, "r");
  size_t lines = 0;
  for (int c; log && (c = fgetc(log)) != EOF;)
    lines += c == '\n';
  if (log)
    fclose(log);
  size_t accounts = 0;
  failed |= count_accounts(env, &accounts) != 0 || accounts != 3 || lines != 3;
  printf("\n   %s\n", failed ? "INCONSISTENT: see the figures above"
                             : "3 accounts, no orphan, 3 events sent once each");
  return failed;
}

static void usage(FILE *to) {
  fprintf(to, "usage: accounts [--db PATH | --store URL] [--mail-log PATH] [COMMAND]\n"
              "  demo                 a scripted tour on a fresh database (the default)\n"
              "  register EMAIL NAME  open an account with NAME as its admin\n"
              "  deliver              run the relay once: events go to the mail command\n"
              "  list                 accounts, admins and welcome mails\n"
              "  --db PATH            SQLite file (default accounts.db)\n"
              "  --store URL          any store URL instead, e.g. postgresql://...\n"
              "  --mail-log PATH      where the mail command appends (default outbox-mail.log)\n");
}

/* The demo starts from nothing: a fresh SQLite file, or empty tables on a server. */
static int reset(const char *db, const char *store, const char *mail_log, uow_env *env) {
  if (unlink(mail_log) != 0 && errno != ENOENT)
    perror(mail_log);
  if (!store) {
    const char *suffixes[] = {"", "-wal", "-shm"};
    char path[1100];
    for (size_t i = 0; i < 3; i++) {
      snprintf(path, sizeof(path), "%s%s", db, suffixes[i]);
      if (unlink(path) != 0 && errno != ENOENT)
        perror(path);
    }
    return 0;
  }
  uow_unit *unit = NULL;
  const char *clear[] = {"DELETE FROM welcome_mails", "DELETE FROM account_users",
                         "DELETE FROM accounts", "DELETE FROM uow_outbox"};
  int rc = uow_begin(env, &unit);
  for (size_t i = 0; rc == UOW_OK && i < 4; i++)
    rc = uow_exec(unit, "main", clear[i], NULL, 0);
  if (rc == UOW_OK)
    rc = uow_commit(unit);
  if (rc)
    fprintf(stderr, "accounts: reset: %s\n", uow_errmsg(unit));
  uow_end(unit);
  return rc;
}

int main(int argc, char **argv) {
  const char *db = "accounts.db", *store = NULL, *mail_log = "outbox-mail.log";
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
    else if (strcmp(argv[i], "--mail-log") == 0)
      mail_log = argv[++i];
    else {
      usage(stderr);
      return 2;
    }
  }
  const char *command = i < argc ? argv[i++] : "demo";
  int nargs = argc - i;
  bool demo = strcmp(command, "demo") == 0;
  if (!(demo && nargs == 0) && !(strcmp(command, "register") == 0 && nargs == 2) &&
      !(strcmp(command, "deliver") == 0 && nargs == 0) &&
      !(strcmp(command, "list") == 0 && nargs == 0)) {
    usage(stderr);
    return 2;
  }
  char url[1100];
  if (store)
    snprintf(url, sizeof(url), "%s", store);
  else
    snprintf(url, sizeof(url), "sqlite:%s", db);
  if (demo && !store && reset(db, NULL, mail_log, NULL))
    return 1;
  uow_env *env = NULL;
  int rc = open_env(url, &env) ? 1 : 0;
  if (rc == 0 && demo && store)
    rc = reset(db, store, mail_log, env) ? 1 : 0;
  if (rc == 0 && demo) {
    printf("libuow accounts demo on %s\n\n", store ? "the given store" : url);
    rc = cmd_demo(env, mail_log);
  } else if (rc == 0 && strcmp(command, "register") == 0) {
    rc = cmd_register(env, argv[i], argv[i + 1]);
  } else if (rc == 0 && strcmp(command, "deliver") == 0) {
    uow_relay_stats stats;
    rc = cmd_deliver(env, mail_log, &stats);
  } else if (rc == 0) {
    rc = cmd_list(env);
  }
  uow_env_close(env);
  return rc;
}
