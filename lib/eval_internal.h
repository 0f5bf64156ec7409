/* eval_internal.h - what the eval module's files (eval.c, eval_paired.c)
 * share; not part of the library's API. */
#ifndef QE_EVAL_INTERNAL_H
#define QE_EVAL_INTERNAL_H

#include <stdint.h>

#include "metrics.h"
#include "tokenizer.h"

/* Credit the decoded bytes and words of n scored targets to acc (word/byte
 * perplexity); nothing when tok is NULL. */
void qe_eval_credit_text(qe_ppl *acc, const qe_tokenizer *tok, const int32_t *target, int n);

#endif
