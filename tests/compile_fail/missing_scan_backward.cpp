// Must not compile: mamba_gradients on a backend without s6_backward (as the
// device backend is until its scan backward exists); the diagnostic names it.
#include <span>
#include <vector>

#include "mixlens/models/mamba_backward.hpp"

struct no_scan_backward : mixlens::host_backend<double> {
  void s6_backward() const = delete;  // hides the host's
};

int main() {
  const mixlens::models::mamba_weights<double> w{};
  const std::vector<mixlens::index_t> tokens{0};
  (void)mixlens::models::mamba_gradients(no_scan_backward{}, w, std::span<const mixlens::index_t>(tokens));
}
