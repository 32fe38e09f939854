// Setting a string attribute of a TorchScript module (`locod finetune` writes the finetuned
// model's contract, `spec_json`, this way), which tch's C API does not offer. Built by build.rs
// against the headers of the libtorch torch-sys links.
#include <cstring>
#include <exception>
#include <string>

#include <torch/script.h>

extern "C" {

// Returns 0, or -1 with a malloc'd message in *error (the caller frees it).
int locod_module_set_str_attr(void* module, const char* name, const char* value, char** error) noexcept {
  try {
    auto* m = static_cast<torch::jit::script::Module*>(module);
    if (!m->hasattr(name)) {
      *error = strdup((std::string("the module has no attribute ") + name).c_str());
      return -1;
    }
    m->setattr(name, std::string(value));
    return 0;
  } catch (const std::exception& e) {
    *error = strdup(e.what());
    return -1;
  }
}
}
