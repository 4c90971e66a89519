#include "front_runtime.h"

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace pukaipu::front {

namespace {

constexpr int kTimeoutMs = 5000;

std::string trim(const std::string& s)
{
	size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
	return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// `set ssl ...` with the file as a payload (`<<` up to an empty line): a PEM
// has no empty line, but one pasted with CRLF or blank lines still passes.
std::string withPayload(const std::string& command, const std::string& pem)
{
	std::string out = command + " <<\n";
	std::istringstream in(pem);
	for (std::string line; std::getline(in, line);) {
		line = trim(line);
		if (!line.empty())
			out += line + "\n";
	}
	return out + "\n"; // the empty line that ends the payload
}

// The instance (backend) of a front-dir file: USER.pem, USER-client-ca.crt.
std::optional<std::string> instanceOf(const std::string& file)
{
	if (file.ends_with("-client-ca.crt"))
		return file.substr(0, file.size() - 14);
	if (file.ends_with(".pem") && file != "default.pem")
		return file.substr(0, file.size() - 4);
	return std::nullopt;
}

// How HAProxy says a command worked: a transaction for `set ssl`,
// "Success!" for `commit ssl`, nothing at all for maps and shutdowns.
bool accepted(const std::string& command, const std::string& answer)
{
	const std::string a = trim(answer);
	if (command.starts_with("set ssl "))
		return a.find("ransaction created") != std::string::npos || a.find("ransaction updated") != std::string::npos;
	if (command.starts_with("commit ssl "))
		return a.find("Success!") != std::string::npos;
	return a.empty();
}

} // namespace

std::map<std::string, std::string> parseMap(const std::string& text)
{
	std::map<std::string, std::string> out;
	std::istringstream in(text);
	for (std::string line; std::getline(in, line);) {
		size_t sp = line.find(' ');
		if (sp != std::string::npos && sp > 0)
			out[line.substr(0, sp)] = line.substr(sp + 1);
	}
	return out;
}

std::optional<std::vector<std::string>> runtimeCommands(const std::string& dir, const Changes& c)
{
	std::vector<std::string> certs, maps, cas, shutdowns;
	std::set<std::string> cut; // instances whose open sessions end
	for (const auto& [file, ch] : c) {
		if (!ch.changed())
			continue;
		// A file that came or went is an instance that came or went: its
		// backend is in haproxy.cfg, which only a reload changes.
		if (!ch.before || !ch.after)
			return std::nullopt;
		const std::string path = dir + "/" + file;
		auto inst = instanceOf(file);
		if (inst && file.ends_with(".pem")) {
			certs.push_back(withPayload("set ssl cert " + path, *ch.after));
			certs.push_back("commit ssl cert " + path);
			cut.insert(*inst);
		} else if (inst) {
			cas.push_back(withPayload("set ssl ca-file " + path, *ch.after));
			cas.push_back("commit ssl ca-file " + path);
			cut.insert(*inst);
		} else if (file.ends_with(".map")) {
			auto before = parseMap(*ch.before), after = parseMap(*ch.after);
			for (const auto& [k, v] : after)
				if (!before.contains(k))
					maps.push_back("add map " + path + " " + k + " " + v);
				else if (before[k] != v)
					maps.push_back("set map " + path + " " + k + " " + v);
			for (const auto& [k, v] : before)
				if (!after.contains(k))
					maps.push_back("del map " + path + " " + k);
			if (file == "serials.map") {
				// The instance whose current certificate changed (renew).
				const auto& backends = c.contains("backends.map") && c.at("backends.map").after
							       ? parseMap(*c.at("backends.map").after)
							       : std::map<std::string, std::string> {};
				for (const auto& [k, v] : after)
					if (before[k] != v && backends.contains(k))
						cut.insert(backends.at(k));
			}
		} else {
			return std::nullopt; // haproxy.cfg, crt-list, default.pem, nobody-ca.crt
		}
	}
	for (const auto& inst : cut)
		shutdowns.push_back("shutdown sessions server " + inst + "/s");
	// The order is the security of a renew (tests/integration/test_front.py,
	// test_renew_*, and tests/unit/test_front_runtime.cc check it):
	// 1. server certificates (nothing is refused by them);
	// 2. the maps: serials.map refuses the old client certificate on every
	//    request from here on, also on connections already open and on
	//    resumed TLS sessions;
	// 3. the client CA files: new handshakes with the old certificate fail;
	// 4. then the instance's open sessions are closed: a WebSocket that was
	//    opened before step 2 ends here, and none can open after step 2.
	std::vector<std::string> out;
	for (auto* part : { &certs, &maps, &cas, &shutdowns })
		out.insert(out.end(), part->begin(), part->end());
	return out;
}

Result<std::string> cliCommand(const std::string& socket, const std::string& command)
{
	sockaddr_un addr {};
	addr.sun_family = AF_UNIX;
	if (socket.size() >= sizeof(addr.sun_path))
		return fail("socket path '%s' is too long", socket.c_str());
	std::memcpy(addr.sun_path, socket.c_str(), socket.size());
	UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (!fd)
		return failErrno(errno, "socket");
	if (connect(fd.get(), (sockaddr*)&addr, sizeof(addr)) < 0)
		return failErrno(errno, "connect to '%s'", socket.c_str());
	std::string line = command.ends_with("\n") ? command : command + "\n";
	for (size_t done = 0; done < line.size();) {
		ssize_t n = send(fd.get(), line.data() + done, line.size() - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return failErrno(errno, "write to '%s'", socket.c_str());
		done += (size_t)n;
	}
	shutdown(fd.get(), SHUT_WR);
	std::string answer;
	char buf[4096];
	for (;;) {
		pollfd pfd { fd.get(), POLLIN, 0 };
		int r = poll(&pfd, 1, kTimeoutMs);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return fail("no answer from '%s' within %d s", socket.c_str(), kTimeoutMs / 1000);
		ssize_t n = read(fd.get(), buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return failErrno(errno, "read from '%s'", socket.c_str());
		if (n == 0)
			return answer;
		answer.append(buf, (size_t)n);
		if (answer.size() > (1u << 20))
			return fail("answer from '%s' is over 1 MiB", socket.c_str());
	}
}

Result<std::vector<pid_t>> workers(const std::string& masterSocket)
{
	TRY(answer, cliCommand(masterSocket, "show proc"));
	std::vector<pid_t> out;
	std::istringstream in(*answer);
	for (std::string line; std::getline(in, line);) {
		std::istringstream fields(line);
		long pid = 0;
		std::string type;
		if (fields >> pid >> type && type == "worker" && pid > 1)
			out.push_back((pid_t)pid);
	}
	if (out.empty())
		return fail("'%s' lists no worker", masterSocket.c_str());
	return out;
}

namespace {

// A worker that stops after a reload has its proxies disabled and refuses
// `shutdown sessions server`; its sessions of that backend are closed one
// by one (`show sess`: "0xPTR: proto=... fe=desktops be=USER srv=s ...").
Result<void> shutdownEach(const std::string& masterSocket, const std::string& prefix, const std::string& backend)
{
	TRY(list, cliCommand(masterSocket, prefix + "show sess"));
	std::istringstream in(*list);
	for (std::string line; std::getline(in, line);) {
		size_t colon = line.find(':');
		if (!line.starts_with("0x") || colon == std::string::npos || line.find(" be=" + backend + " ") == std::string::npos)
			continue;
		TRY(answer, cliCommand(masterSocket, prefix + "shutdown session " + line.substr(0, colon)));
		// A session that ended in between is fine.
		if (!trim(*answer).empty() && answer->find("No such session") == std::string::npos)
			return fail("shutdown session %s: %s", line.substr(0, colon).c_str(), trim(*answer).c_str());
	}
	return {};
}

} // namespace

Result<void> applyRuntime(const std::string& masterSocket, const std::vector<std::string>& commands)
{
	if (commands.empty())
		return {};
	TRY(pids, workers(masterSocket));
	for (pid_t pid : *pids)
		for (const auto& cmd : commands) {
			const std::string prefix = "@!" + std::to_string(pid) + " ";
			TRY(answer, cliCommand(masterSocket, prefix + cmd));
			const std::string shutdownServer = "shutdown sessions server ";
			if (cmd.starts_with(shutdownServer) && trim(*answer) == "Proxy is disabled.") {
				const std::string server = cmd.substr(shutdownServer.size());
				TRYV(shutdownEach(masterSocket, prefix, server.substr(0, server.find('/'))));
				continue;
			}
			if (!accepted(cmd, *answer)) {
				const std::string first = cmd.substr(0, cmd.find(" <<"));
				return fail("haproxy worker %d refused '%s': %s", (int)pid, first.c_str(), trim(*answer).c_str());
			}
		}
	return {};
}

} // namespace pukaipu::front
