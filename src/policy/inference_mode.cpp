// libtorch's c10::InferenceMode for the calling thread, which tch does not expose (it has only
// grad mode). Scoped and nestable, kept in thread-local storage: entering allocates nothing.
// Built by build.rs against the headers of the libtorch torch-sys links.
#include <new>

#include <c10/core/InferenceMode.h>

namespace {
alignas(c10::InferenceMode) thread_local unsigned char storage[sizeof(c10::InferenceMode)];
thread_local int depth = 0;
}  // namespace

extern "C" {

void locod_inference_mode_enter() noexcept {
  if (depth++ == 0) {
    new (storage) c10::InferenceMode(true);
  }
}

void locod_inference_mode_exit() noexcept {
  if (depth > 0 && --depth == 0) {
    reinterpret_cast<c10::InferenceMode*>(storage)->~InferenceMode();
  }
}

int locod_inference_mode_is_enabled() noexcept { return c10::InferenceMode::is_enabled() ? 1 : 0; }
}
