/* Force-included when compiling mlx-c. mlx-c's private/io.h calls std::format, which
 * libstdc++ before 13 (GCC 12, Debian 12) does not have. Where <format> exists it is used;
 * otherwise a minimal stand-in formats "{}" placeholders with operator<<, which covers the
 * error messages mlx-c builds with it. */
#ifndef MLXK_FORMAT_COMPAT_H
#define MLXK_FORMAT_COMPAT_H
#ifdef __cplusplus
#if __has_include(<format>)
#include <format>
#else
#include <sstream>
#include <string>
#include <string_view>

namespace std {
namespace mlxk_compat {
inline void format_into(std::ostringstream& out, std::string_view fmt) { out << fmt; }

template <class First, class... Rest>
void format_into(std::ostringstream& out, std::string_view fmt, First&& first, Rest&&... rest) {
  auto at = fmt.find("{}");
  if (at == std::string_view::npos) {
    out << fmt;
    return;
  }
  out << fmt.substr(0, at) << first;
  format_into(out, fmt.substr(at + 2), std::forward<Rest>(rest)...);
}
}  // namespace mlxk_compat

template <class... Args>
std::string format(std::string_view fmt, Args&&... args) {
  std::ostringstream out;
  mlxk_compat::format_into(out, fmt, std::forward<Args>(args)...);
  return out.str();
}
}  // namespace std
#endif
#endif
#endif
