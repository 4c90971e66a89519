// nft: libnftables, loaded on demand (see nft.cc), for the network stage and
// the host table. Scripts run as one transaction in the caller's netns.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace pukaipu {

// Runs one nftables script as one transaction: all of it or nothing.
[[nodiscard]] Result<void> applyNft(const std::string& script, const char* where);

// `list table inet NAME` as nftables' JSON; nullopt when there is no such
// table in this netns.
[[nodiscard]] Result<std::optional<nlohmann::json>> listNftTable(const std::string& name);

} // namespace pukaipu
