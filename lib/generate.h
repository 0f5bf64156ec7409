/* generate.h - text generation for a list of prompts, with continuous
 * batching over the decoder's KV-cache slots.
 *
 *   prompts --tokenize (BOS as the model says)--> waiting queue
 *     --> free slot: prefill calls (prompt chunks of several slots share a
 *         call, at most max_rows tokens) --> first token
 *     --> decode calls: one token for every generating slot per call
 *     --> per token: sample (lib/sample.h) from the device's top-k, append
 *         its text, check EOS / stop strings / max_new / context
 *     --> finished: result callback, slot refilled from the queue at once
 *
 * Each prompt's tokens, log-probs and text depend only on the prompt, the
 * model, the options that shape a sequence (max_new, n_ctx, sampling, stop
 * strings) and the run seed: never on n_slots, max_rows, or which prompts
 * share a call (lib/decode.h gives bit-identical rows; each prompt samples
 * from its own RNG, seed = qe_sample_seed(run seed, prompt index)).
 *
 * Threading: one call runs on the calling thread; callbacks run on it too.
 */
#ifndef QE_GENERATE_H
#define QE_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "cl.h"
#include "kv_format.h"
#include "model.h"
#include "sample.h"
#include "status.h"
#include "tokenizer.h"

typedef enum qe_gen_finish {
    QE_GEN_EOS = 0, /* the model produced its end-of-sequence token */
    QE_GEN_STOP,    /* the text reached a stop string */
    QE_GEN_LENGTH,  /* max_new tokens were generated */
    QE_GEN_CTX      /* the slot's context is full */
} qe_gen_finish;

/* "eos", "stop", "length", "ctx"; "?" otherwise. */
const char *qe_gen_finish_name(qe_gen_finish f);

typedef struct qe_gen_opts {
    int max_new;            /* tokens generated per prompt at most (default 128, >= 1) */
    int n_slots;            /* sequences decoded side by side (default 8; capped at
                               the number of prompts) */
    int n_ctx;              /* positions per slot; 0 (default) = longest prompt +
                               max_new, at most the model's n_ctx_train */
    int max_rows;           /* tokens per device call; 0 = lib/decode.h's default */
    int top_k;              /* log-prob candidates recorded per generated token
                               (0 .. 64, default 5) */
    qe_sample_opts sample;  /* greedy by default */
    const char *const *stop;/* [n_stop] stop strings (non-empty) */
    int n_stop;
    int parse_special;      /* control-token texts in prompts become those tokens */
    qe_kv_format kv_k, kv_v;/* KV-cache formats (default f32, the engine's; the CLI's is f16) */
    const char *device;     /* OpenCL device choice (lib/cl.h), when no qe_cl is given */
    int progress;           /* progress line on stderr (default 0) */
    const size_t *index;    /* [n] the index each prompt reports (qe_gen_result.index)
                               and seeds with; NULL = 0 .. n-1. Lets a resumed job
                               generate a subset of its prompts with their own seeds. */
} qe_gen_opts;

qe_gen_opts qe_gen_opts_default(void);

/* One finished prompt; arrays are valid during the callback only. */
typedef struct qe_gen_result {
    size_t index;             /* position in the prompt list (o->index[i] when given) */
    const char *prompt;
    size_t prompt_len;
    int n_prompt;             /* prompt tokens, BOS included */
    const int32_t *prompt_ids;/* [n_prompt] */
    int n_gen;                /* generated tokens (EOS included when it ended the text) */
    const int32_t *ids;       /* [n_gen] */
    const float *logp;        /* [n_gen] log-prob of each generated token */
    int top_k;
    const int32_t *topk_id;   /* [n_gen][top_k] by log-prob descending */
    const float *topk_logp;   /* [n_gen][top_k] */
    const char *text;         /* generated text: pieces of non-control tokens,
                                 cut before a stop string (NUL-terminated) */
    size_t text_len;
    qe_gen_finish finish;
    int stop_index;           /* which stop string ended it, or -1 */
    uint64_t seed;            /* this prompt's sampling seed */
    double wait_s;            /* start of generation -> its prefill began */
    double ttft_s;            /* prefill began -> first token on the host */
    double prefill_tps;       /* n_prompt / ttft_s */
    double decode_s;          /* first token -> last token */
    double decode_tps;        /* (n_gen - 1) / decode_s; 0 when n_gen < 2 */
} qe_gen_result;

/* One device call. */
typedef struct qe_gen_step {
    int64_t index;
    int prefill;      /* 1: prompt chunks, 0: one token per generating slot */
    int n_seqs;       /* slots in the call (the batch size) */
    int n_tokens;     /* tokens in the call */
    double seconds;   /* wall time of the call, host round trip included */
} qe_gen_step;

typedef qe_status (*qe_gen_result_fn)(void *ud, const qe_gen_result *r);
typedef qe_status (*qe_gen_step_fn)(void *ud, const qe_gen_step *s);

typedef struct qe_gen_stats {
    size_t n_prompts;
    int n_slots, n_ctx, max_rows;
    int64_t prompt_tokens;   /* tokens prefilled */
    int64_t gen_tokens;      /* tokens generated */
    int64_t prefill_calls, decode_calls;
    int64_t decode_rows;     /* tokens fed by decode calls */
    double upload_s;         /* device open, kernel builds, weight upload */
    double prefill_s;        /* sum of prefill call times */
    double decode_s;         /* sum of decode call times */
    double wall_s;           /* generation loop, callbacks included */
    char device[256];
} qe_gen_stats;

/* Generate for prompts[0 .. n) (lens[i] bytes each; lens NULL = strlen).
 * cl: the device to use, or NULL to open o->device. on_result sees every
 * prompt once, in the order they finish; a non-OK return stops the run with
 * that status. on_step (may be NULL) sees every device call. stats may be
 * NULL. QE_EINVAL (naming the prompt) for an empty prompt, a prompt longer
 * than the context, or bad options; device errors pass through. */
qe_status qe_generate(const qe_model *m, const qe_tokenizer *tok, qe_cl *cl,
                      const char *const *prompts, const size_t *lens, size_t n,
                      const qe_gen_opts *o, qe_gen_result_fn on_result, qe_gen_step_fn on_step,
                      void *ud, qe_gen_stats *stats);

#endif
