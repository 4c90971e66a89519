// cli: what pukaipu and pukaipu-run do alike with their command lines.
#pragma once

#include <cstdio>
#include <optional>

#include <CLI/CLI.hpp>

namespace pukaipu {

// Parses argv. nullopt: go on. Otherwise the exit status: 0 after --help or
// --version (printed by CLI11), `failStatus` after a one-line error
// "PROG: what (see --help)" on stderr.
[[nodiscard]] inline std::optional<int> parseCommandLine(CLI::App& app, int argc, char** argv, const char* prog,
							 int failStatus)
{
	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError& e) {
		if (e.get_exit_code() == 0)
			return app.exit(e);
		std::fprintf(stderr, "%s: %s (see --help)\n", prog, e.what());
		return failStatus;
	}
	return std::nullopt;
}

} // namespace pukaipu
