#include "names.h"

#include "base/net_literal.h"

namespace pukaipu {

std::string lowerName(std::string s)
{
	for (auto& c : s)
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
	return s;
}

Result<void> checkInstanceName(const std::string& name, const std::string& what)
{
	if (isIpLiteral(name) || (!name.empty() && name.front() == '[' && name.back() == ']'))
		return fail("%s '%s': an IP address; instances get DNS names only (browsers send no TLS server name "
			    "for an IP, and the front door routes by it)",
			    what.c_str(), name.c_str());
	if (name.find('*') != std::string::npos)
		return fail("%s '%s': a wildcard; an instance's names are exact (a wildcard --server-cert may serve "
			    "several instances, each under its own name)",
			    what.c_str(), name.c_str());
	if (!validHostName(name))
		return fail("%s '%s': not a DNS name (letters, digits and '-' in dot-separated labels)", what.c_str(),
			    name.c_str());
	return {};
}

std::vector<std::string> namesOf(const InstanceConfig& inst)
{
	std::vector<std::string> out { lowerName(inst.fqdn) };
	for (const auto& n : inst.extraNames)
		out.push_back(lowerName(n));
	return out;
}

Result<void> checkNamesFree(const std::vector<InstanceConfig>& all, const std::string& user,
			    const std::vector<std::string>& names)
{
	for (const auto& other : all) {
		if (other.user == user)
			continue;
		for (const auto& theirs : namesOf(other))
			for (const auto& n : names)
				if (lowerName(n) == theirs)
					return fail("name '%s' already belongs to instance '%s'; a name opens one instance only",
						    n.c_str(), other.user.c_str());
	}
	return {};
}

std::vector<std::string> permittedDomains(const GlobalConfig& g)
{
	std::vector<std::string> out { lowerName(g.domain) };
	for (const auto& d : g.extraDomains)
		out.push_back(lowerName(d));
	return out;
}

bool withinDomains(const std::string& name, const std::vector<std::string>& domains)
{
	const std::string n = lowerName(name);
	for (const auto& d : domains)
		if (n == d || (n.size() > d.size() && n.ends_with(d) && n[n.size() - d.size() - 1] == '.'))
			return true;
	return false;
}

} // namespace pukaipu
