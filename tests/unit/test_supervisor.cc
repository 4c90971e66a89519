// The output relay of `pukaipu-run USER`: what the desktop prints reaches the
// launcher's stderr (a terminal, or journald) as text and nothing else.
#include <doctest/doctest.h>

#include "sandbox/supervisor.h"

using namespace pukaipu;

TEST_CASE("relayLine keeps text and UTF-8, escapes control characters")
{
	CHECK(relayLine("xpra: listening on fd 3") == "xpra: listening on fd 3");
	CHECK(relayLine("tab\there") == "tab\there");
	CHECK(relayLine("grüße, €, 🙂") == "grüße, €, 🙂");
	// A journald priority prefix is just text here; the unit sets SyslogLevelPrefix=no.
	CHECK(relayLine("<0>emergency?") == "<0>emergency?");
	// ESC sequences that would move the cursor, set a title or query the terminal.
	CHECK(relayLine("\x1b[2J\x1b]0;owned\x07") == "\\x1b[2J\\x1b]0;owned\\x07");
	CHECK(relayLine(std::string("a\0b", 3)) == "a\\x00b");
	CHECK(relayLine("\r\x7f") == "\\x0d\\x7f");
	// C1 controls: raw (0x9b is the 8-bit CSI) and UTF-8-encoded U+009B.
	CHECK(relayLine("\x9b" "31m") == "\\x9b31m");
	CHECK(relayLine("\xc2\x9b" "31m") == "\\xc2\\x9b31m");
	// Broken UTF-8: overlong, surrogate, truncated, beyond U+10FFFF.
	CHECK(relayLine("\xc0\xaf") == "\\xc0\\xaf");
	CHECK(relayLine("\xed\xa0\x80") == "\\xed\\xa0\\x80");
	CHECK(relayLine("\xe2\x82") == "\\xe2\\x82");
	CHECK(relayLine("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");
}
