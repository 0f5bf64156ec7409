/* store_internal.h - what store.c and store_merge.c share: the handle and
 * its statement cache. Not part of the API. */
#ifndef QE_STORE_INTERNAL_H
#define QE_STORE_INTERNAL_H

#include <sqlite3.h>

#include "status.h"
#include "store.h"

/* The highest chunk index + 1 a run may plan or store (and what a merge
 * accepts from another database). */
#define QE_STORE_MAX_CHUNKS ((int64_t)1 << 31)
/* The most top-k entries a run keeps a token (the run's config and each
 * chunk's rows are held to it). */
#define QE_STORE_MAX_TOP_K 4096
/* A magic value in the database header: "qeva". */
#define QE_STORE_APP_ID 0x71657661

enum qe_store_stmt {
    S_BEGIN, S_COMMIT, S_MODEL, S_DATASET, S_SKIP, S_DSTOK, S_SESSION, S_SESSION_END,
    S_RUN_GET, S_RUN_INSERT, S_RUN_REOPEN, S_RUN_CHUNKS, S_RUN_PLAN, S_RUN_PLAN_GET,
    S_RUN_WBYTES, S_RUN_END, S_CHUNK, S_TOKEN, S_LOGITS, S_LOGITS_GET, S_KLD_DEL, S_KLD,
    S_TIMING, S_COUNT
};

struct qe_store {
    sqlite3 *db;
    char *path;
    int readonly;
    int busy_ms;
    int version;                   /* PRAGMA user_version */
    sqlite3_stmt *stmts[S_COUNT];  /* prepared on first use */
};

/* The cached statement id, reset and with bindings cleared. */
qe_status qe_store__stmt(qe_store *st, int id, sqlite3_stmt **out);
/* BEGIN IMMEDIATE / COMMIT; `what` names the operation in messages. */
qe_status qe_store__begin(qe_store *st, const char *what);
qe_status qe_store__commit(qe_store *st, const char *what);
/* Roll back the open transaction, if any. */
void qe_store__rollback(qe_store *st);
/* Step s to SQLITE_DONE and reset it; failures name `what`. */
qe_status qe_store__step_done(qe_store *st, sqlite3_stmt *s, const char *what);
/* s in its own BEGIN IMMEDIATE transaction. */
qe_status qe_store__exec_one(qe_store *st, sqlite3_stmt *s, const char *what);
/* Bind a copy of v, or NULL. */
void qe_store__bind_text(sqlite3_stmt *s, int i, const char *v);
/* 1 if k is 64 lower-case hex digits. */
int qe_store__is_key(const char *k);
/* A format name in a run or generation config: 1 to 64 characters from
 * [A-Za-z0-9_./:+-] (so the canonical config text stays one line per key). */
int qe_store__name_ok(const char *v);
/* QE_EINVAL naming `what` unless k is a key. */
qe_status qe_store__need_key(const char *what, const char *k);

#endif
