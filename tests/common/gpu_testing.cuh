// What every GPU test shares: GPU cases skip with a visible reason where no
// usable CUDA device exists (BOOST_AUTO_TEST_SUITE(name, *requires_device())).
#pragma once

#include <boost/test/unit_test.hpp>

#include <string>

#include "mixlens/gpu/error.cuh"

namespace mixlens::testing {

struct device_present {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    std::string reason;
    boost::test_tools::assertion_result r(gpu::device_available(&reason));
    if (!r) r.message() << "skipped: " << reason;
    return r;
  }
};

inline auto requires_device() { return boost::unit_test::precondition(device_present{}); }

}  // namespace mixlens::testing
