#include "generation.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/file_io.h"

namespace pukaipu {

namespace {

bool plainName(const std::string& n)
{
	if (n.empty() || n.size() > 64 || n[0] == '.')
		return false;
	for (char c : n)
		if (!(isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.'))
			return false;
	return true;
}

std::string readLink(const std::string& path)
{
	char buf[PATH_MAX];
	ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
	return n > 0 ? std::string(buf, (size_t)n) : std::string();
}

} // namespace

Result<RootfsGeneration> resolveRootfs(const std::string& configured)
{
	RootfsGeneration g { configured, "", configured };
	const std::string link = configured + "/current";
	struct stat st;
	if (lstat(link.c_str(), &st) < 0) {
		if (errno == ENOENT)
			return g; // a single rootfs tree (before generations)
		return failErrno(errno, "rootfs '%s'", link.c_str());
	}
	if (!S_ISLNK(st.st_mode))
		return fail("rootfs '%s' is not a symlink to a generation", link.c_str());
	std::string target = readLink(link);
	if (!plainName(target))
		return fail("rootfs '%s' points to '%s', not to a generation beside it", link.c_str(), target.c_str());
	g.generation = target;
	g.path = configured + "/" + target;
	return g;
}

std::string generationRecord(const std::string& runUserDir, pid_t launcher)
{
	return runUserDir + "/rootfs-" + std::to_string(launcher);
}

std::string recordedGeneration(const std::string& runUserDir, pid_t launcher)
{
	auto text = readFileLimited(generationRecord(runUserDir, launcher), PATH_MAX);
	if (!text)
		return "";
	std::string s = *text;
	while (!s.empty() && s.back() == '\n')
		s.pop_back();
	return s;
}

Behind behindCurrent(const std::string& base, const std::string& runningGeneration)
{
	Behind b;
	b.current = readLink(base + "/current");
	if (b.current.empty() || b.current == runningGeneration || runningGeneration.empty())
		return b;
	b.behind = true;
	// rootfs-builder writes "superseded" into GEN.json when current leaves GEN;
	// without it, the time current last moved.
	int64_t since = 0;
	if (auto text = readFileLimited(base + "/" + runningGeneration + ".json", 1 << 16)) {
		auto j = nlohmann::json::parse(*text, nullptr, false);
		if (j.is_object() && j.contains("superseded") && j["superseded"].is_number_integer())
			since = j["superseded"].get<int64_t>();
	}
	struct stat st;
	if (since == 0 && lstat((base + "/current").c_str(), &st) == 0)
		since = st.st_mtime;
	const int64_t now = time(nullptr);
	b.seconds = since > 0 && now > since ? now - since : 0;
	return b;
}

int clientConnections(const std::string& socketPath)
{
	// Num RefCount Protocol Flags Type St Inode Path; St 03 = connected,
	// Flags 00010000 = listening (__SO_ACCEPTCON).
	std::ifstream f("/proc/self/net/unix");
	std::string line;
	int n = 0;
	std::getline(f, line); // header
	while (std::getline(f, line)) {
		std::istringstream in(line);
		std::string num, ref, proto, flags, type, st, inode, path;
		if (!(in >> num >> ref >> proto >> flags >> type >> st >> inode >> path))
			continue;
		// Accepted connections only: one still in the backlog is served by
		// the next session (systemd's listening socket outlives this one).
		if (path == socketPath && st == "03" && flags != "00010000")
			++n;
	}
	return n;
}

std::string restartRequest(const std::string& runUserDir)
{
	return runUserDir + "/restart-when-idle";
}

std::string swapReason(const std::string& generation, const Behind& b, int clients, uint32_t idleSeconds,
		       uint32_t staleDays, bool requested)
{
	if (clients > 0)
		return "";
	if (requested)
		return "a restart was asked for (pukaipu restart --when-idle) and no client is attached";
	if (!b.behind)
		return "";
	const std::string what = "generation " + generation + " is behind current (" + b.current + ")";
	if (idleSeconds > 0)
		return what + " and no client is attached";
	const int64_t days = b.seconds / 86400;
	if (days >= (int64_t)staleDays)
		return what + " for " + std::to_string(days) + " days (rootfsUpdate.staleDays " +
		       std::to_string(staleDays) + ") and no client is attached";
	return "";
}

} // namespace pukaipu
