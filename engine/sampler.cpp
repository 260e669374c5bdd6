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

// hxp_sampler_sample is llama_sampler_sample over a caller-owned candidate buffer of
// cap entries. It returns the token, or -1 when every candidate was ruled out (a
// grammar dead end), -2 when llama.cpp threw, -3 when the vocabulary exceeds cap.
llama_token hxp_sampler_sample(struct llama_sampler * smpl, struct llama_context * ctx, int32_t idx,
                               llama_token_data * buf, int32_t cap) {
    try {
        const float * logits = llama_get_logits_ith(ctx, idx);
        const int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(ctx)));
        if (logits == nullptr) {
            return -2;
        }
        if (n_vocab > cap) {
            return -3;
        }
        for (llama_token t = 0; t < n_vocab; t++) {
            buf[t] = llama_token_data{t, logits[t], 0.0f};
        }
        llama_token_data_array cur = {buf, (size_t) n_vocab, -1, false};
        llama_sampler_apply(smpl, &cur);
        if (cur.selected < 0 || cur.selected >= (int64_t) cur.size || std::isinf(cur.data[cur.selected].logit) && cur.data[cur.selected].logit < 0) {
            return -1;
        }
        const llama_token tok = cur.data[cur.selected].id;
        llama_sampler_accept(smpl, tok);
        return tok;
    } catch (...) {
        return -2;
    }
}

}
