// names: the host names an instance is opened with, and the rules they obey.
//
// The front door routes by the TLS server name (SNI), and browsers send no SNI
// for an IP address: so an instance's names (its fqdn and its extra names) are
// DNS names only, never IP literals. The rules, checked by `pukaipu create`
// (and by `pukaipu migrate` for instances made before them):
//  - a name is a DNS name of LDH labels, compared case-insensitively;
//  - no IP literal (IPv4 or IPv6) and no wildcard: an instance's names are
//    exact, and the front door's crt-list line, maps and Host check name them
//    exactly. A wildcard *certificate* (--server-cert for *.example.org) is
//    allowed: it may serve several instances, each under its own exact name,
//    because the key stays with the front door, outside every sandbox;
//  - a name belongs to one instance only (fqdn or extra name, any instance);
//  - a name the host CA signs for lies within the CA's permitted domains
//    (pukaipu.json `domain` and `extraDomains`: the CA's nameConstraints).
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "config.h"

namespace pukaipu {

// Lower-case ASCII (DNS names compare case-insensitively).
[[nodiscard]] std::string lowerName(std::string s);

// `what` (e.g. "--fqdn") names the option in the one-line error.
[[nodiscard]] Result<void> checkInstanceName(const std::string& name, const std::string& what);

// fqdn first, then the extra names, lower-cased.
[[nodiscard]] std::vector<std::string> namesOf(const InstanceConfig& inst);

// The first of `names` that another instance of `all` (not `user`) has:
// "name 'x' already belongs to instance 'y'".
[[nodiscard]] Result<void> checkNamesFree(const std::vector<InstanceConfig>& all, const std::string& user,
					  const std::vector<std::string>& names);

// The domains the host CA may sign for: domain, then extraDomains.
[[nodiscard]] std::vector<std::string> permittedDomains(const GlobalConfig& g);

// `name` is one of `domains` or lies below one (as nameConstraints match a
// dNSName: whole labels, so "xexample.org" is not under "example.org").
[[nodiscard]] bool withinDomains(const std::string& name, const std::vector<std::string>& domains);

} // namespace pukaipu
