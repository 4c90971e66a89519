#include "base/process.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace pukaipu {

Result<void> becomeUser(uid_t uid, gid_t gid)
{
	if (setgroups(0, nullptr) < 0)
		return failErrno(errno, "drop supplementary groups");
	if (setresgid(gid, gid, gid) < 0)
		return failErrno(errno, "setresgid %u", (unsigned)gid);
	if (setresuid(uid, uid, uid) < 0)
		return failErrno(errno, "setresuid %u", (unsigned)uid);
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != uid || eu != uid || su != uid ||
	    rg != gid || eg != gid || sg != gid || getgroups(0, nullptr) != 0)
		return fail("credentials are not uid %u gid %u after the switch", (unsigned)uid, (unsigned)gid);
	return {};
}

Result<std::string> runAsUser(uid_t uid, gid_t gid, const std::string& what,
			      const std::function<Result<std::string>()>& body)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return failErrno(errno, "%s: pipe", what.c_str());
	UniqueFd rd(pipefd[0]), wr(pipefd[1]);
	pid_t pid = fork();
	if (pid < 0)
		return failErrno(errno, "%s: fork", what.c_str());
	if (pid == 0) {
		rd.reset();
		auto r = [&]() -> Result<std::string> {
			TRYV(becomeUser(uid, gid));
			return body();
		}();
		// The answer: '0' and the text, or '1' and the Error's bytes.
		std::string answer = r ? "0" + *r : "1" + std::string(reinterpret_cast<const char*>(&r.error()), sizeof(Error));
		for (std::size_t done = 0; done < answer.size();) {
			ssize_t n = write(wr.get(), answer.data() + done, answer.size() - done);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				_exit(1);
			done += (std::size_t)n;
		}
		_exit(0);
	}
	wr.reset();
	std::string answer;
	char buf[512];
	ssize_t n;
	while ((n = read(rd.get(), buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			answer.append(buf, (std::size_t)n);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (answer.size() == 1 + sizeof(Error) && answer[0] == '1') {
		Error e;
		std::memcpy(&e, answer.data() + 1, sizeof(e));
		e.what[sizeof(e.what) - 1] = '\0';
		return failErrno(e.errno_, "%s", e.what); // the child's Error, as it made it
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || answer.empty() || answer[0] != '0')
		return fail("%s as uid %u failed (status %d)", what.c_str(), (unsigned)uid, status);
	return answer.substr(1);
}

Result<ProgramResult> runProgram(const std::vector<std::string>& argv, bool captureStdout)
{
	if (argv.empty())
		return fail("runProgram: no program");
	std::string prog = argv[0];
	if (prog.find('/') == std::string::npos) {
		const std::string dirs = kSystemPath;
		std::string found;
		for (std::size_t a = 0; a <= dirs.size() && found.empty();) {
			std::size_t b = dirs.find(':', a);
			if (b == std::string::npos)
				b = dirs.size();
			std::string candidate = dirs.substr(a, b - a) + "/" + prog;
			if (access(candidate.c_str(), X_OK) == 0)
				found = candidate;
			a = b + 1;
		}
		if (found.empty())
			return failErrno(ENOENT, "run %s: not found in %s", prog.c_str(), kSystemPath);
		prog = found;
	}
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return failErrno(errno, "run %s: pipe", argv[0].c_str());
	UniqueFd readEnd(pipefd[0]), writeEnd(pipefd[1]);
	posix_spawn_file_actions_t fa;
	if (int rc = posix_spawn_file_actions_init(&fa); rc != 0)
		return failErrno(rc, "run %s", argv[0].c_str());
	int rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (rc == 0)
		rc = captureStdout ? posix_spawn_file_actions_adddup2(&fa, writeEnd.get(), 1)
				   : posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, writeEnd.get(), 2);
	std::vector<char*> args;
	for (const auto& a : argv)
		args.push_back(const_cast<char*>(a.c_str()));
	args.push_back(nullptr);
	std::string pathVar = std::string("PATH=") + kSystemPath;
	char* env[] = { pathVar.data(), const_cast<char*>("LC_ALL=C"), nullptr };
	pid_t pid = -1;
	if (rc == 0)
		rc = posix_spawn(&pid, prog.c_str(), &fa, nullptr, args.data(), env);
	posix_spawn_file_actions_destroy(&fa);
	writeEnd.reset(); // only the child writes: EOF once it is gone
	if (rc != 0)
		return failErrno(rc, "run %s", prog.c_str());
	ProgramResult out;
	char buf[512];
	ssize_t n;
	while ((n = read(readEnd.get(), buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0 && out.output.size() < 4096)
			out.output.append(buf, (size_t)n);
	readEnd.reset();
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return failErrno(errno, "run %s: wait", prog.c_str());
	while (!out.output.empty() && (out.output.back() == '\n' || out.output.back() == ' '))
		out.output.pop_back();
	out.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return out;
}

} // namespace pukaipu
