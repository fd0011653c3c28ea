// A C++ program that lives by its exceptions: parse errors thrown and caught, a custom exception
// type, a rethrow, and destructors that must run while the stack unwinds. Built with
// -fwasm-exceptions (the exception-handling proposal, try_table/exnref).
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

struct ParseError : std::runtime_error {
  explicit ParseError(const std::string& what, int at) : std::runtime_error(what), at(at) {}
  int at;
};

static int unwound = 0;
struct Guard {
  ~Guard() { ++unwound; }
};

static int parse(const std::string& text) {
  Guard guard;
  if (text.empty()) throw std::invalid_argument("empty input");
  int value = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') throw ParseError("not a digit", static_cast<int>(i));
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

static int checked(const std::string& text) {
  try {
    return parse(text);
  } catch (const ParseError&) {
    throw;  // rethrown to the caller, unchanged
  }
}

int main(int argc, char** argv) {
  std::vector<std::string> inputs(argv + 1, argv + argc);
  if (inputs.empty()) inputs = {"12", "", "4x", "30"};
  int total = 0;
  for (const auto& text : inputs) {
    try {
      total += checked(text);
    } catch (const ParseError& e) {
      std::printf("parse error at %d: %s\n", e.at, e.what());
    } catch (const std::exception& e) {
      std::printf("error: %s\n", e.what());
    }
  }
  std::printf("total=%d unwound=%d\n", total, unwound);
  return total == 0 ? 1 : 0;
}
