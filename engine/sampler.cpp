// C entry points for the grammar sampler that never let a C++ exception reach Go:
// llama.cpp throws from std::regex on a trigger pattern it cannot compile and from the
// grammar when it is handed a token the grammar does not allow, and an exception
// crossing cgo terminates the process.
#include <cmath>
#include <exception>

#include "llama.h"

extern "C" {

struct llama_sampler * hxp_sampler_init_grammar(const struct llama_vocab * vocab, const char * grammar,
                                                const char ** patterns, size_t n_patterns,
                                                const llama_token * tokens, size_t n_tokens) {
    try {
        if (n_patterns == 0 && n_tokens == 0) {
            return llama_sampler_init_grammar(vocab, grammar, "root");
        }
        return llama_sampler_init_grammar_lazy_patterns(vocab, grammar, "root", patterns, n_patterns, tokens, n_tokens);
    } catch (...) {
        return nullptr;
    }
}

// fill writes logits into buf as a candidate array; n_vocab must not exceed the
// buffer's capacity (checked by the caller).
static llama_token_data_array fill(const float * logits, llama_token_data * buf, int32_t n_vocab) {
    for (llama_token t = 0; t < n_vocab; t++) {
        buf[t] = llama_token_data{t, logits[t], 0.0f};
    }
    return llama_token_data_array{buf, (size_t) n_vocab, -1, false};
}

// ruled_out reports whether cur has no selected candidate, or one the grammar removed.
static bool ruled_out(const llama_token_data_array & cur) {
    if (cur.selected < 0 || cur.selected >= (int64_t) cur.size) {
        return true;
    }
    const float l = cur.data[cur.selected].logit;
    return std::isinf(l) && l < 0;
}

// sample picks a token from logits (n_vocab of them) with the chain, the grammar
// (may be NULL) kept out of it: the chain picks from the unconstrained candidates
// first and the grammar checks only that one token; only when the grammar rejects it
// are all candidates filtered by the grammar and the chain run again (llama.cpp's
// common sampler does the same). A grammar check over the whole vocabulary costs
// milliseconds per token, so doing it only on a rejection keeps a constrained
// sequence cheap whenever the model follows the format. When grammar_first is set the
// grammar filters every candidate before the chain, always (the slow reference
// behaviour, kept for the benchmark that measures the difference). The distribution
// is the same either way: a rejected draw is redrawn from the grammar's candidates.
// Each redraw increments *redrawn. It returns the token, or -1 when every candidate
// was ruled out (a grammar dead end).
static llama_token sample(struct llama_sampler * chain, struct llama_sampler * grammar, const float * logits,
                          int32_t n_vocab, llama_token_data * buf, bool grammar_first, int32_t * redrawn) {
    llama_token_data_array cur = fill(logits, buf, n_vocab);
    if (grammar != nullptr && grammar_first) {
        llama_sampler_apply(grammar, &cur);
    }
    llama_sampler_apply(chain, &cur);
    if (ruled_out(cur)) {
        return -1;
    }
    llama_token tok = cur.data[cur.selected].id;
    if (grammar != nullptr && !grammar_first) {
        llama_token_data one = {tok, 1.0f, 0.0f};
        llama_token_data_array single = {&one, 1, -1, false};
        llama_sampler_apply(grammar, &single);
        if (std::isinf(one.logit) && one.logit < 0) {
            (*redrawn)++;
            cur = fill(logits, buf, n_vocab);
            llama_sampler_apply(grammar, &cur);
            llama_sampler_apply(chain, &cur);
            if (ruled_out(cur)) {
                return -1;
            }
            tok = cur.data[cur.selected].id;
        }
    }
    if (grammar != nullptr) {
        llama_sampler_accept(grammar, tok);
    }
    llama_sampler_accept(chain, tok);
    return tok;
}

// hxp_sampler_sample samples batch entry idx of ctx's last decode over a caller-owned
// candidate buffer of cap entries (see sample). It returns the token, or -1 for a
// grammar dead end, -2 when llama.cpp threw, -3 when the vocabulary exceeds cap.
llama_token hxp_sampler_sample(struct llama_sampler * chain, struct llama_sampler * grammar, struct llama_context * ctx,
                               int32_t idx, llama_token_data * buf, int32_t cap, bool grammar_first, int32_t * redrawn) {
    try {
        const float * logits = llama_get_logits_ith(ctx, idx);
        const int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(ctx)));
        if (logits == nullptr) {
            return -2;
        }
        if (n_vocab > cap) {
            return -3;
        }
        return sample(chain, grammar, logits, n_vocab, buf, grammar_first, redrawn);
    } catch (...) {
        return -2;
    }
}

// hxp_sampler_sample_logits is hxp_sampler_sample over a copy of one entry's logits
// (n_vocab of them, at most cap), so that it can run while the context decodes the
// next batch.
llama_token hxp_sampler_sample_logits(struct llama_sampler * chain, struct llama_sampler * grammar, const float * logits,
                                      int32_t n_vocab, llama_token_data * buf, int32_t cap, bool grammar_first,
                                      int32_t * redrawn) {
    try {
        if (n_vocab > cap) {
            return -3;
        }
        return sample(chain, grammar, logits, n_vocab, buf, grammar_first, redrawn);
    } catch (...) {
        return -2;
    }
}

}
