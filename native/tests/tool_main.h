// Shared by the developer tools built beside the tests (forward_profile, gemm_search): --key=value
// arguments, and a main that turns an exception into a message and exit status 1.
#pragma once

#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>

namespace qwen3::tools {

using Args = std::map<std::string, std::string>;

inline Args ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      throw std::invalid_argument("expected --key=value, got " + arg);
    }
    args[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
  return args;
}

inline std::string Get(const Args& args, const std::string& key, const std::string& fallback) {
  auto it = args.find(key);
  return it == args.end() ? fallback : it->second;
}

inline int64_t GetInt(const Args& args, const std::string& key, int64_t fallback) {
  auto it = args.find(key);
  return it == args.end() ? fallback : std::stoll(it->second);
}

// Runs `run` on the parsed arguments; an exception becomes "name: what" on stderr and status 1.
inline int Main(const char* name, int argc, char** argv,
                const std::function<int(const Args&)>& run) {
  try {
    return run(ParseArgs(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace qwen3::tools
