// A C interface to CTranslate2's Whisper (the engine faster-whisper runs), for `src/ct2/ffi.rs`.
//
// Everything crossing this boundary is plain C: sizes, pointers to buffers the caller owns, and an error
// buffer. No C++ exception leaves these functions: each one catches, writes the message into `error` and
// returns a failure value.

#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "ctranslate2/models/whisper.h"

namespace {

using ctranslate2::StorageView;
using ctranslate2::models::Whisper;

void write_error(char* error, size_t error_len, const std::string& message) {
  if (error == nullptr || error_len == 0)
    return;
  const size_t n = std::min(message.size(), error_len - 1);
  std::memcpy(error, message.data(), n);
  error[n] = '\0';
}

}  // namespace

struct ct2w_model {
  Whisper whisper;
};

struct ct2w_encoded {
  StorageView output;
};

// Options of one `generate` call; mirrors `WhisperOptions` (see src/ct2/ffi.rs).
struct ct2w_options {
  size_t beam_size;
  float patience;
  float length_penalty;
  size_t max_length;
  size_t sampling_topk;
  float sampling_temperature;
  size_t max_initial_timestamp_index;
  int suppress_blank;
};

extern "C" {

// Loads the CTranslate2 model in `dir` on the CPU with `compute_type` ("int8", "float32", ...):
// `replicas` replicas sharing one copy of the weights, each running one call at a time on `threads`
// intra-op threads. Every function below may be called from several threads at once: each call is queued
// to the next free replica. Null on failure.
ct2w_model* ct2w_load(const char* dir, const char* compute_type, size_t threads, size_t replicas,
                      char* error, size_t error_len) {
  try {
    ctranslate2::models::ModelLoader loader(dir);
    loader.device = ctranslate2::Device::CPU;
    loader.compute_type = ctranslate2::str_to_compute_type(compute_type);
    loader.num_replicas_per_device = replicas == 0 ? 1 : replicas;
    ctranslate2::ReplicaPoolConfig config;
    config.num_threads_per_replica = threads;
    return new ct2w_model{Whisper(loader, config)};
  } catch (const std::exception& e) {
    write_error(error, error_len, e.what());
    return nullptr;
  }
}

void ct2w_free(ct2w_model* model) {
  delete model;
}

int ct2w_is_multilingual(const ct2w_model* model) {
  return model->whisper.is_multilingual() ? 1 : 0;
}

size_t ct2w_n_mels(const ct2w_model* model) {
  return model->whisper.n_mels();
}

// Runs the encoder over one window of log-mel features (`n_mels` rows of `frames` values, row-major;
// whisper wants 3000 frames). Null on failure.
ct2w_encoded* ct2w_encode(ct2w_model* model, const float* mel, size_t n_mels, size_t frames,
                          char* error, size_t error_len) {
  try {
    const std::vector<float> values(mel, mel + n_mels * frames);
    StorageView features({1, static_cast<ctranslate2::dim_t>(n_mels),
                          static_cast<ctranslate2::dim_t>(frames)},
                         values);
    auto output = model->whisper.encode(features, /*to_cpu=*/true).get();
    return new ct2w_encoded{std::move(output)};
  } catch (const std::exception& e) {
    write_error(error, error_len, e.what());
    return nullptr;
  }
}

void ct2w_encoded_free(ct2w_encoded* encoded) {
  delete encoded;
}

// Decodes one window from its encoder output, starting from the `prompt` token ids. Writes up to
// `capacity` generated token ids (the prompt left out) to `tokens` and their number to `n_tokens`, the
// hypothesis' score (log-probability divided by its length) and the no-speech probability. 0 on
// success, -1 on failure.
int ct2w_generate(ct2w_model* model, const ct2w_encoded* encoded, const size_t* prompt,
                  size_t prompt_len, const ct2w_options* options, size_t* tokens, size_t capacity,
                  size_t* n_tokens, float* score, float* no_speech_prob, char* error,
                  size_t error_len) {
  try {
    ctranslate2::models::WhisperOptions whisper_options;
    whisper_options.beam_size = options->beam_size;
    whisper_options.patience = options->patience;
    whisper_options.length_penalty = options->length_penalty;
    whisper_options.max_length = options->max_length;
    whisper_options.sampling_topk = options->sampling_topk;
    whisper_options.sampling_temperature = options->sampling_temperature;
    whisper_options.max_initial_timestamp_index = options->max_initial_timestamp_index;
    whisper_options.suppress_blank = options->suppress_blank != 0;
    whisper_options.return_scores = true;
    whisper_options.return_no_speech_prob = true;
    std::vector<std::vector<size_t>> prompts{std::vector<size_t>(prompt, prompt + prompt_len)};
    auto futures = model->whisper.generate(encoded->output, std::move(prompts), whisper_options);
    const auto result = futures.at(0).get();
    const auto& ids = result.sequences_ids.at(0);
    const size_t n = std::min(ids.size(), capacity);
    std::copy(ids.begin(), ids.begin() + n, tokens);
    *n_tokens = n;
    *score = result.scores.empty() ? 0.0f : result.scores[0];
    *no_speech_prob = result.no_speech_prob;
    return 0;
  } catch (const std::exception& e) {
    write_error(error, error_len, e.what());
    return -1;
  }
}

// Writes the most probable language token of the window (`<|en|>`) to `language` (NUL-terminated,
// `language_len` bytes at most). 0 on success, -1 on failure.
int ct2w_detect_language(ct2w_model* model, const ct2w_encoded* encoded, char* language,
                         size_t language_len, char* error, size_t error_len) {
  try {
    auto futures = model->whisper.detect_language(encoded->output);
    const auto result = futures.at(0).get();
    write_error(language, language_len, result.empty() ? std::string() : result.front().first);
    return 0;
  } catch (const std::exception& e) {
    write_error(error, error_len, e.what());
    return -1;
  }
}

// Aligns `n_text` text tokens to the window's audio over the model's alignment heads (dynamic time
// warping on their cross-attention), its first `frames` mel frames holding audio. Writes the path's
// (text index, time index) pairs to `path` (2 × `path_capacity` values) and their number to `path_len`,
// and each text token's probability to `probs` (`n_text` values). 0 on success, -1 on failure.
int ct2w_align(ct2w_model* model, const ct2w_encoded* encoded, const size_t* start, size_t start_len,
               const size_t* text, size_t n_text, size_t frames, size_t median_filter_width,
               long* path, size_t path_capacity, size_t* path_len, float* probs, char* error,
               size_t error_len) {
  try {
    std::vector<size_t> start_sequence(start, start + start_len);
    std::vector<std::vector<size_t>> text_tokens{std::vector<size_t>(text, text + n_text)};
    auto futures = model->whisper.align(encoded->output,
                                        std::move(start_sequence),
                                        std::move(text_tokens),
                                        {frames},
                                        static_cast<ctranslate2::dim_t>(median_filter_width));
    const auto result = futures.at(0).get();
    const size_t n = std::min(result.alignments.size(), path_capacity);
    for (size_t i = 0; i < n; ++i) {
      path[2 * i] = static_cast<long>(result.alignments[i].first);
      path[2 * i + 1] = static_cast<long>(result.alignments[i].second);
    }
    *path_len = n;
    for (size_t i = 0; i < n_text; ++i)
      probs[i] = i < result.text_token_probs.size() ? result.text_token_probs[i] : 0.0f;
    return 0;
  } catch (const std::exception& e) {
    write_error(error, error_len, e.what());
    return -1;
  }
}

}  // extern "C"
